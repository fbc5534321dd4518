import subprocess
import sys

import mssoft


def test_import_and_cli_help_do_not_load_tensorflow():
    code = (
        "import sys, mssoft, mssoft.cli.main\n"
        "from click.testing import CliRunner\n"
        "mssoft.soft_mask, mssoft.discover_scans\n"
        "r = CliRunner().invoke(mssoft.cli.main.cli, ['--help'])\n"
        "assert r.exit_code == 0, r.output\n"
        "r = CliRunner().invoke(mssoft.cli.main.cli, ['build-masks', '--help'])\n"
        "assert r.exit_code == 0, r.output\n"
        "print('tensorflow' in sys.modules, 'keras' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False False"


def test_public_api_is_declared():
    for name in mssoft.__all__:
        assert getattr(mssoft, name) is not None
    assert mssoft.__version__


def test_every_subpackage_is_installed_by_setup_cfg():
    import configparser
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    config = configparser.ConfigParser()
    config.read(root / "setup.cfg")
    listed = set(config["options"]["packages"].replace(",", " ").split())
    inits = (root / "mssoft").rglob("__init__.py")
    found = {"mssoft.cli"} | {".".join(i.parent.relative_to(root).parts) for i in inits}
    assert listed == found
