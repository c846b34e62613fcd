"""One worker of the two-process MultiWorkerMirroredStrategy test (run as a subprocess).

Usage: python multiworker_worker.py PORT0 PORT1 INDEX OUT.npz
"""

import json
import os
import sys
from pathlib import Path

port0, port1, index, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
os.environ["TF_CONFIG"] = json.dumps({
    "cluster": {"worker": [f"127.0.0.1:{port0}", f"127.0.0.1:{port1}"]},
    "task": {"type": "worker", "index": index},
})
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from advtf.attacks import Threat  # noqa: E402
from advtf.training.loop import AdversarialConfig, TrainConfig, train  # noqa: E402
from advtf.distribute.strategy import is_chief, make_strategy  # noqa: E402
from tiny import digits, tiny_cnn  # noqa: E402

strategy = make_strategy("auto")  # TF_CONFIG set: auto must pick multiworker
assert isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy), type(strategy).__name__
config = TrainConfig(epochs=2, batch_size=40, optimizer="sgd", lr=0.05, weight_decay=5e-4, schedule="constant")
adversarial = AdversarialConfig(Threat(norm="l2", eps=0.5, steps=2))
result = train(lambda: tiny_cnn(), digits(train_subset=200), config, adversarial,
               workdir=Path(out).with_suffix(".work"), strategy=strategy)
np.savez(out, *[v.numpy() for v in result.model.weights])
print(json.dumps({"chief": is_chief(), "loss": result.history[-1]["train_loss"]}))
