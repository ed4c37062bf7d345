import pytest

from longlora_kit.profile import ENV_VAR, PROFILES, current_profile, pick


def test_default_is_workshop(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert current_profile() == "workshop"


@pytest.mark.parametrize("name", PROFILES)
def test_env_var_selects_profile(monkeypatch, name):
    monkeypatch.setenv(ENV_VAR, name.upper())
    assert current_profile() == name
    assert pick({"smoke": 1, "workshop": 2, "full": 3}) == {"smoke": 1, "workshop": 2, "full": 3}[name]


def test_bad_profile_names_the_variable(monkeypatch):
    monkeypatch.setenv(ENV_VAR, "fast")
    with pytest.raises(ValueError, match=ENV_VAR):
        current_profile()
    with pytest.raises(ValueError, match="profile='huge'"):
        current_profile("huge")


def test_pick_requires_every_profile():
    with pytest.raises(ValueError, match="missing the profiles"):
        pick({"smoke": 1, "workshop": 2})
