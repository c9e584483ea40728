"""The CPU engine for a classifier guardrail: one sequence-classification model (a reward
model version from the registry) served over HTTP with vLLM's classification API, so the
gateway talks to it exactly as it would to `vllm serve MODEL --runner pooling` on a GPU.

`transformers serve` generates text only; this is its counterpart for classifiers, started
by the serving worker (serving/engine_supervisor.py) in a process of its own, never in the
web process. Run by hand:

    python -m serving.classify_server MODEL_DIR --host 127.0.0.1 --port 8011

Endpoints (the shapes vLLM's /classify uses):
- `GET /health` -> {"status": "ok"} once the model is loaded (it loads before listening);
- `GET /v1/models` -> the one served model;
- `POST /classify` (and `/v1/classify`): {"model", "input": str | [str]} or
  {"model", "messages": [chat messages]} (rendered with the model's chat template) ->
  {"id", "object": "list", "created", "model", "data": [{"index", "label", "probs",
  "num_classes"}], "usage"}. A one-output model (a reward model) gives
  probs = [sigmoid(score)], as vLLM does; more outputs give a softmax.

Imports nothing of the portal: it runs from the same environment without Django.
"""

import argparse
import threading
import time
import uuid
from pathlib import Path
from typing import Any

MAX_INPUTS = 64
MAX_CHARS = 200_000


class Classifier:
    def __init__(self, model_dir: str, *, device: str = "cpu", max_length: int = 0) -> None:
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForSequenceClassification.from_pretrained(model_dir)
        # The model pools each text at its last token that is not the pad: it must know the
        # pad the tokenizer pads a batch with, or a shorter text is read at a pad.
        self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self.tokenizer.padding_side = "right"
        self.device = "cuda" if device == "auto" and torch.cuda.is_available() else "cpu"
        self.model.to(self.device).eval()
        limit = int(getattr(self.tokenizer, "model_max_length", 0) or 0)
        positions = int(getattr(self.model.config, "max_position_embeddings", 0) or 0)
        self.max_length = max_length or min(x for x in (limit, positions, 4096) if x > 0)
        labels = self.model.config.id2label or {}
        self.labels = [str(labels.get(i, labels.get(str(i), i))) for i in range(self.num_classes)]
        self.lock = threading.Lock()  # one forward pass at a time: CPU threads are shared

    @property
    def num_classes(self) -> int:
        return int(self.model.config.num_labels)

    def render(self, messages: list[dict[str, Any]]) -> str:
        if getattr(self.tokenizer, "chat_template", None):
            return str(self.tokenizer.apply_chat_template(messages, tokenize=False))
        return "\n".join(f"{m.get('role')}: {m.get('content')}" for m in messages)

    def classify(self, texts: list[str]) -> tuple[list[list[float]], int]:
        """Class probabilities for each text, and the prompt tokens counted."""
        torch = self.torch
        with self.lock, torch.no_grad():
            enc = self.tokenizer(
                texts, return_tensors="pt", padding=True, truncation=True,
                max_length=self.max_length,
            ).to(self.device)  # fmt: skip
            logits = self.model(**enc).logits.float()
        probs = torch.sigmoid(logits) if logits.shape[-1] == 1 else torch.softmax(logits, -1)
        return probs.tolist(), int(enc["attention_mask"].sum())


def _texts(body: dict[str, Any], classifier: Classifier) -> list[str]:
    """The texts a request asks about; ValueError naming the field when malformed."""
    if "messages" in body:
        messages = body["messages"]
        if not isinstance(messages, list) or not messages:
            raise ValueError("messages: a non-empty list of chat messages.")
        for index, message in enumerate(messages):
            if not isinstance(message, dict) or not isinstance(message.get("content"), str):
                raise ValueError(f"messages[{index}]: an object with a string content.")
        texts = [classifier.render(messages)]
    else:
        raw = body.get("input")
        texts = [raw] if isinstance(raw, str) else raw
        if not isinstance(texts, list) or not texts:
            raise ValueError("input: a string or a non-empty list of strings.")
        if len(texts) > MAX_INPUTS:
            raise ValueError(f"input: at most {MAX_INPUTS} texts a request.")
        for index, text in enumerate(texts):
            if not isinstance(text, str):
                raise ValueError(f"input[{index}]: a string.")
    if sum(len(t) for t in texts) > MAX_CHARS:
        raise ValueError(f"input: at most {MAX_CHARS} characters in all.")
    return texts


def build_app(classifier: Classifier, served_name: str):
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse

    app = FastAPI(title="classifier", docs_url=None, redoc_url=None, openapi_url=None)
    created = int(time.time())

    def error(status: int, message: str, param: str | None = None) -> JSONResponse:
        body = {"error": {"message": message, "type": "invalid_request_error", "param": param,
                          "code": None}}  # fmt: skip
        return JSONResponse(body, status_code=status)

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        item = {"id": served_name, "object": "model", "created": created, "owned_by": "portal"}
        return {"object": "list", "data": [item]}

    def classify(body: Any) -> JSONResponse:
        if not isinstance(body, dict):
            return error(400, "The body is a JSON object.")
        try:
            texts = _texts(body, classifier)
        except ValueError as problem:
            field = str(problem).partition(": ")[0]
            return error(400, str(problem), field.split("[")[0])
        probs, tokens = classifier.classify(texts)
        data = []
        for index, row in enumerate(probs):
            best = max(range(len(row)), key=row.__getitem__)
            data.append({"index": index, "label": classifier.labels[best], "probs": row,
                         "num_classes": len(row)})  # fmt: skip
        usage = {"prompt_tokens": tokens, "total_tokens": tokens, "completion_tokens": 0}
        return JSONResponse(
            {
                "id": f"classify-{uuid.uuid4().hex}",
                "object": "list",
                "created": int(time.time()),
                "model": served_name,
                "data": data,
                "usage": usage,
            }  # fmt: skip
        )

    async def endpoint(request: Request) -> JSONResponse:
        try:
            body = await request.json()
        except ValueError:
            return error(400, "The body is not JSON.")
        # The forward pass holds the CPU for milliseconds to seconds: off the event loop.
        from starlette.concurrency import run_in_threadpool

        return await run_in_threadpool(classify, body)

    app.add_api_route("/classify", endpoint, methods=["POST"])
    app.add_api_route("/v1/classify", endpoint, methods=["POST"])
    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model_dir")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8011)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--served-name", default="", help="Default: the model folder's name.")
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)
    import uvicorn

    classifier = Classifier(args.model_dir, device=args.device)
    served = args.served_name or Path(args.model_dir).name
    uvicorn.run(
        build_app(classifier, served), host=args.host, port=args.port, log_level=args.log_level
    )


if __name__ == "__main__":
    main()
