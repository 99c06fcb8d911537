"""What every benchmark record carries about the machine and the run's settings."""
from fastdistilbert.benchmarking import env

CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 17
model name\t: AMD EPYC
stepping\t: 1

processor\t: 1
vendor_id\t: AuthenticAMD
cpu family\t: 26
model\t\t: 2
stepping\t: 0
"""


def test_cpu_model_is_the_first_cpus_family_model_and_stepping(tmp_path):
    path = tmp_path / "cpuinfo"
    path.write_text(CPUINFO)
    assert env.cpu_model(path) == "family 25 model 17 stepping 1"


def test_cpu_model_without_cpuinfo_is_empty(tmp_path):
    assert env.cpu_model(tmp_path / "missing") == ""


def test_environment_records_the_settings_that_change_a_run(monkeypatch):
    for name in env.RUN_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    # (torch and libgomp read these once, at start-up: setting them here changes nothing but the record)
    monkeypatch.setenv("THP_MEM_ALLOC_ENABLE", "1")
    monkeypatch.setenv("GOMP_SPINCOUNT", "1000")
    monkeypatch.setenv("UNRELATED_SETTING", "x")
    recorded = env.environment(2)
    assert recorded["settings"] == {"THP_MEM_ALLOC_ENABLE": "1", "GOMP_SPINCOUNT": "1000"}
    assert recorded["cpu_model"] == env.cpu_model()
