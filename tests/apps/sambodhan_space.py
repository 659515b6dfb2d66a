"""An inference Space shaped like Sambodhan's (src/services/*_api/app.py): no /health; the
urgency Space serves POST /predict_urgency, the department Space POST /predict; the body is
{"text": str | list[str]}; the answer {"label", "confidence", "scores"} (a list for several
texts); GET / gives {"message", "status", "model_version"}. The model is a transformers
text-classification pipeline over MODEL_DIR, as theirs is over MODEL_REPO."""
import os

import uvicorn
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel
from transformers import pipeline

ROUTE = "/predict_urgency" if os.environ.get("SAMBODHAN_LABEL", "urgency") == "urgency" else "/predict"
classifier = pipeline("text-classification", model=os.environ["MODEL_DIR"], top_k=None, device=-1)
app = FastAPI(title="Sambodhan-shaped classifier API")


class TextInput(BaseModel):
    text: str | list[str]


def predict(texts):
    results = []
    for predictions in classifier(texts):
        predictions = sorted(predictions, key=lambda p: p["score"], reverse=True)
        results.append({"label": predictions[0]["label"], "confidence": round(predictions[0]["score"], 4),
                        "scores": {p["label"]: round(p["score"], 4) for p in predictions}})
    return results[0] if len(results) == 1 else results


@app.post(ROUTE)
def predict_route(body: TextInput):
    texts = [body.text] if isinstance(body.text, str) else body.text
    if not all(t.strip() for t in texts):
        raise HTTPException(status_code=422, detail="String input cannot be empty.")
    return predict(texts)


@app.get("/")
def root():
    return {"message": "Sambodhan Classifier API is running.", "status": "Active",
            "model_version": os.environ.get("MODEL_VERSION", "unknown")}


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(os.environ["PORT"]), log_level="warning")
