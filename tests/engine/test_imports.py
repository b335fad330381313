"""What importing the engine costs: SciPy (erf, for GELU) loads only when GELU first runs."""

import subprocess
import sys


def test_importing_nd_leaves_scipy_unloaded_until_gelu_runs():
    code = (
        "import sys\n"
        "from paramstore import nd\n"
        "assert 'scipy' not in sys.modules, 'scipy loaded at import'\n"
        "nd.LeakyReLU(nd.ones((2,)), act_type='gelu')\n"
        "assert 'scipy.special' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_ml_dtypes_loads_only_when_a_bfloat16_is_first_met():
    code = (
        "import sys\n"
        "from paramstore import nd, checkpoint\n"
        "from paramstore.client import connect\n"
        "assert 'ml_dtypes' not in sys.modules, 'ml_dtypes loaded at import'\n"
        "assert nd.array([1.5], dtype='bfloat16').dtype.__name__ == 'bfloat16'\n"
        "assert 'ml_dtypes' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
