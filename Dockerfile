# The retrain Space: runs train_model.py once per restart; serves a status page on 7860 meanwhile.
FROM python:3.12-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    HOME=/home/user \
    HF_HOME=/home/user/.cache/huggingface \
    WANDB_DIR=/home/user/wandb \
    HF_HUB_DISABLE_TELEMETRY=1

# Spaces run the container as uid 1000.
RUN useradd --create-home --uid 1000 user
WORKDIR /home/user/app

COPY --chown=user requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt

COPY --chown=user . .
USER 1000

EXPOSE 7860
CMD ["python", "train_model.py", "--status-port", "7860", "--output-dir", "/home/user/outputs"]
