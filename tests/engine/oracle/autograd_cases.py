"""Higher-order gradients: `(name, f(nd, x))`, run alike on MXNet and paramstore.

For each case the recorder keeps `dx = grad(f(x), x, create_graph=True)` and the gradient of
`sum(head * dx)` with respect to x: the second derivative, weighted.
"""

import numpy as np

X = np.array([[0.5, -1.2, 2.0], [1.5, 0.3, -0.7]], np.float32)
POSITIVE = np.abs(X) + 0.2

CASES = [
    ("exp", lambda nd, x: nd.exp(x), X),
    ("log", lambda nd, x: nd.log(x), POSITIVE),
    ("sigmoid", lambda nd, x: nd.sigmoid(x), X),
    ("tanh", lambda nd, x: nd.tanh(x), X),
    ("relu", lambda nd, x: nd.relu(x), X),
    ("square", lambda nd, x: nd.square(x), X),
    ("sqrt", lambda nd, x: nd.sqrt(x), POSITIVE),
    ("abs", lambda nd, x: nd.abs(x), X),
    ("negative", lambda nd, x: -x, X),
    ("softrelu", lambda nd, x: nd.Activation(x, act_type="softrelu"), X),
    ("cube by multiply", lambda nd, x: x * x * x, X),
    ("divide", lambda nd, x: 1 / (x * x + 1), X),
    ("composite", lambda nd, x: nd.exp(x) * nd.sigmoid(x) + nd.tanh(x * 2), X),
]
