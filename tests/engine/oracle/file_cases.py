"""Models saved to files on both engines: what `Block.save` describes and what `nd.load` sees.

Each builder receives a `gluon.nn` module and returns an initialized model; the recorder
builds each in a fresh name scope, as the tests do.
"""


def nested_mlp(nn):
    net = nn.Sequential()
    with net.name_scope():
        net.add(nn.Dense(4, in_units=3, activation="relu"))
        inner = nn.Sequential()
        with inner.name_scope():
            inner.add(nn.Dense(3, in_units=4), nn.Dense(2, in_units=3))
        net.add(inner)
    net.initialize()
    return net


def tied_mlp(nn):
    net = nn.Sequential()
    shared = nn.Dense(3, in_units=3)
    net.add(nn.Dense(3, in_units=2), shared, nn.Dense(3, in_units=3, params=shared.params))
    net.initialize()
    return net


BUILDERS = {"nested_mlp": nested_mlp, "tied_mlp": tied_mlp}
