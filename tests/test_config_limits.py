"""The config keys for connections, log rotation and throttling, and what a reload keeps."""

import pytest

from jidoteki_admin.config import ConfigError, ConnectionLimits, parse_config, reload_config


def test_defaults_and_partial_objects():
    config = parse_config({"connections": {"max": 10}, "log-rotate": {"keep": 1}, "auth-throttle": {"max-delay": 2.5}})
    assert config.connections == ConnectionLimits(max=10)
    assert (config.log_rotate.bytes, config.log_rotate.keep) == (4 * 1024 * 1024, 1)
    assert (config.auth_throttle.burst, config.auth_throttle.max_delay) == (5, 2.5)
    assert parse_config({}).connections.header_timeout == 10


@pytest.mark.parametrize("raw, message", [
    ({"connections": 5}, '"connections" must be an object like {"header-timeout": 10.0'),
    ({"connections": {"maximum": 5}}, '"connections": unknown key \'maximum\''),
    ({"connections": {"header-timeout": 0}}, '"connections.header-timeout" must be a positive number'),
    ({"log-rotate": {"keep": 1.5}}, '"log-rotate.keep" must be a positive integer'),
    ({"log-rotate": {"bytes": True}}, '"log-rotate.bytes" must be a positive integer'),
    ({"auth-throttle": {"burst": -1}}, '"auth-throttle.burst" must be a positive integer'),
])
def test_bad_values_are_named(raw, message):
    with pytest.raises(ConfigError) as refused:
        parse_config(raw)
    assert message in str(refused.value)


def test_a_reload_takes_the_reloadable_keys_and_names_the_rest():
    old = parse_config({"job-timeout": 10, "endpoints": ["backup"], "services": ["a"]})
    new = parse_config({"job-timeout": 20, "endpoints": [], "services": ["a"], "surprise": 1})
    running, changed, later = reload_config(old, new)
    assert changed == ["job-timeout"]
    assert later == ["endpoints"]
    assert running.job_timeout == 20 and running.endpoints == ("backup",)
    assert running.unknown_keys == ("surprise",)
