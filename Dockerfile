# The retrain Space: runs train_model.py once per restart; serves a status page on PORT meanwhile.
FROM python:3.12-slim

# Spaces run the container as uid 1000, which cannot write the standard library's bytecode cache, and
# the base image ships none (docker-library/python deletes its .pyc files): without this line every
# start compiles the modules it imports again.
# The same first line in both Dockerfiles, so the two images share this layer.
RUN python -m compileall -q -j 0 -x "/(test|tests|idle_test)/" \
        "$(python -c 'import sysconfig; print(sysconfig.get_path("stdlib"))')" \
    && useradd --create-home --uid 1000 user
# State lives under the user's HOME, never beside the code.

COPY requirements.txt /tmp/requirements.txt
RUN pip install --no-cache-dir -r /tmp/requirements.txt

ENV PYTHONUNBUFFERED=1 \
    HOME=/home/user \
    HF_HOME=/home/user/.cache/huggingface \
    WANDB_DIR=/home/user/wandb \
    HF_HUB_DISABLE_TELEMETRY=1 \
    OUTPUT_DIR=/home/user/outputs \
    PORT=7860

WORKDIR /opt/app
COPY . .
# Read-only to uid 1000 too: compile the code's bytecode once here, not at every start.
RUN python -m compileall -q .
USER 1000

EXPOSE 7860
CMD ["python", "train_model.py"]
