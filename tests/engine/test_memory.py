"""Training keeps freed memory for the next step instead of page-faulting it in again."""

import json
import os
import subprocess
import sys

import pytest

STEPS = """
import json, resource
import numpy as np
from paramstore import autograd, gluon, nd
from paramstore.gluon import nn

net = nn.HybridSequential()
net.add(nn.Conv2D(6, 5, activation="relu"), nn.MaxPool2D(), nn.Conv2D(16, 5), nn.Dense(10))
net.initialize()
x = nd.array(np.random.default_rng(0).uniform(size=(64, 1, 28, 28)))
y = nd.array(np.arange(64) % 10)
loss = gluon.loss.SoftmaxCrossEntropyLoss()
trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.01})

def step():
    with autograd.record():
        value = loss(net(x), y)
    value.backward()
    trainer.step(64)

for _ in range(2):
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(3):
    step()
print(json.dumps((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 3))
"""


def faults_per_step(pool: str) -> float:
    env = dict(os.environ, PARAMSTORE_MALLOC_POOL=pool)
    result = subprocess.run([sys.executable, "-c", STEPS], env=env, capture_output=True,
                            text=True, check=True, timeout=120)
    return json.loads(result.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc settings")
def test_training_steps_reuse_freed_memory_instead_of_page_faulting():
    kept, returned = faults_per_step("1"), faults_per_step("0")
    print(f"page faults per step: {kept} kept, {returned} returned to the OS")
    assert returned > 500  # each step's large arrays come back from the OS page by page
    assert kept < returned / 10
