"""The bytes of a trained deep-learning model, and back.

One file holds what scoring needs: the trainer and hyperparameters that rebuild the
network, the feature columns in order, the lookback, and the weights (input scaling
included). Loaded with `weights_only=True`: a model file from the store can hold tensors
and plain values, never code.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

FORMAT = "quantos-torch/1"
# A forward pass's largest allocation is the network's output sequence (windows x lookback x
# 2 hidden float32). Kept near 4 MiB it is reused from the heap; at 8,192 windows (40 MiB for
# the bilstm defaults) glibc hands it out by mmap and, inside a Ray worker, every pass faulted
# its pages in afresh: 1.6x slower there, and 1.3x slower even in a plain process (measured
# with bench/ray_train.py's model, 1,024 windows against 8,192).
FORWARD_BYTES = 4 << 20


@dataclass(frozen=True)
class TorchModel:
    trainer: str
    hyperparameters: dict[str, Any]
    features: list[str]
    lookback: int
    state_dict: dict[str, Any]

    def to_bytes(self) -> bytes:
        import torch

        buffer = io.BytesIO()
        torch.save(
            {
                "format": FORMAT,
                "trainer": self.trainer,
                "hyperparameters": self.hyperparameters,
                "features": self.features,
                "lookback": self.lookback,
                "state_dict": self.state_dict,
            },
            buffer,
        )
        return buffer.getvalue()

    def windows_per_pass(self) -> int:
        """How many windows one forward pass should take: the output held near FORWARD_BYTES."""
        hidden = max(1, int(self.hyperparameters.get("hidden", 1)))
        return max(64, min(8192, FORWARD_BYTES // (4 * max(1, self.lookback) * 2 * hidden)))

    def network(self) -> Any:
        """The network with these weights, in eval mode."""
        from quantos_assets.trainers.registry import get_trainer

        net = get_trainer(self.trainer).module(self.hyperparameters, len(self.features))
        net.load_state_dict(self.state_dict)
        return net.eval()


def is_torch_model(data: bytes) -> bool:
    """torch.save writes a zip archive; a pickled scikit-learn model is not one."""
    return data[:2] == b"PK"


def load_torch_model(data: bytes) -> TorchModel:
    import torch

    saved = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    if not isinstance(saved, dict) or saved.get("format") != FORMAT:
        raise ValueError(f"not a {FORMAT} model file")
    return TorchModel(
        trainer=str(saved["trainer"]),
        hyperparameters=dict(saved["hyperparameters"]),
        features=[str(f) for f in saved["features"]],
        lookback=int(saved["lookback"]),
        state_dict=dict(saved["state_dict"]),
    )
