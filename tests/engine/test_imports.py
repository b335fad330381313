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
