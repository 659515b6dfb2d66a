# The retrain Space: runs train_model.py once per restart; serves a status page on PORT meanwhile.
FROM python:3.12-slim

# Spaces run the container as uid 1000; state lives under its HOME, never beside the code.
RUN useradd --create-home --uid 1000 user

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
USER 1000

EXPOSE 7860
CMD ["python", "train_model.py"]
