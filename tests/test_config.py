import pytest

from qbench.config import VARIANTS, Config, ConfigError, coerce_setting, parse_assignment, resolve
from qbench.jobs import build_job


def test_every_variant_resolves_on_its_action_space():
    from qbench.jobs import HEAD_ACTION_KIND

    for name, variant in VARIANTS.items():
        head = variant.settings.get("q_head", "discrete")
        kind = HEAD_ACTION_KIND[head]
        # a table needs Discrete states: FrozenLake's 16
        task = "FrozenLake-v1" if head == "table" else "CartPole-v1" if kind == "discrete" else "Pendulum-v1"
        job = build_job(name, task, 0)
        assert job.config.total_env_steps == {"FrozenLake-v1": 100_000, "CartPole-v1": 50_000,
                                              "Pendulum-v1": 20_000}[task]


def test_a_table_on_box_observations_is_refused_in_one_line():
    with pytest.raises(ConfigError, match="q_head 'table' keeps one entry per state .* Discrete observations"):
        build_job("tabular_q", "CartPole-v1", 0)
    with pytest.raises(ConfigError, match="target_update 'swap' .* optimizer 'adam'"):
        build_job("tabular_double_q", "FrozenLake-v1", 0, {"optimizer": "adam"})
    with pytest.raises(ConfigError, match="needs target 'double'"):
        build_job("tabular_double_q", "FrozenLake-v1", 0, {"target": "max"})


def test_resolution_order_task_then_variant_then_overrides():
    job = build_job("online_q", "CartPole-v1", 0, {"lr": 1e-4})
    assert job.config.batch_size == 1          # the variant's definition beats the task's tuned batch of 64
    assert job.config.gamma == 0.99            # the task's value where the variant says nothing
    assert job.config.lr == 1e-4               # the override beats both
    later = build_job("dqn", "CartPole-v1", 0, {"lr": 1e-4}, {"lr": 2e-4})
    assert later.config.lr == 2e-4


def test_toml_floats_for_integers_are_accepted_only_when_integral():
    assert coerce_setting("buffer_size", 1e5) == 100_000
    with pytest.raises(ConfigError, match="buffer_size"):
        coerce_setting("buffer_size", 1.5)


@pytest.mark.parametrize("key,value,fragment", [
    ("target", "triple", "valid choices: max, double"),
    ("gamma", 1.5, "must be <= 1.0"),
    ("lr", 0.0, "must be > 0.0"),
    ("n_step", 0, "must be >= 1"),
    ("hidden_sizes", [64, -1], "list of positive integers"),
    ("batch_size", True, "must be int"),
    ("learning_rate", 1e-3, "unknown setting 'learning_rate'"),
    ("lr", float("nan"), "'lr' must be a finite number, got nan"),     # NaN passes every bound comparison
    ("gamma", float("nan"), "'gamma' must be a finite number"),
    ("tau", float("inf"), "'tau' must be a finite number, got inf"),
])
def test_bad_settings_name_the_problem(key, value, fragment):
    with pytest.raises(ConfigError) as info:
        coerce_setting(key, value)
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


def test_unknown_setting_lists_valid_ones_and_suggests():
    with pytest.raises(ConfigError) as info:
        coerce_setting("gama", 0.9)
    assert "did you mean 'gamma'" in str(info.value) and "batch_size" in str(info.value)


def test_inconsistent_parts_are_refused():
    with pytest.raises(ConfigError, match="double.*needs a target network"):
        resolve(VARIANTS["double_dqn"], {}, {"target_update": "none"})
    with pytest.raises(ConfigError, match="batch_size"):
        resolve(VARIANTS["dqn"], {}, {"buffer_size": 10, "batch_size": 32})


def test_unknown_variant_and_task():
    with pytest.raises(ConfigError, match="unknown variant 'dqm'.*did you mean 'dqn'.*double_dqn"):
        build_job("dqm", "CartPole-v1", 0)
    with pytest.raises(ConfigError, match="unknown task 'CartPol'.*CartPole-v1"):
        build_job("dqn", "CartPol", 0)


def test_discrete_variant_on_box_actions_is_refused():
    with pytest.raises(ConfigError, match="needs a Discrete action space.*Pendulum-v1.*Box"):
        build_job("dqn", "Pendulum-v1", 0)


def test_any_registered_gymnasium_id_is_a_task():
    job = build_job("dqn", "FrozenLake8x8-v1", 0)
    assert job.task.env_id == "FrozenLake8x8-v1" and job.config == Config(total_env_steps=50_000)


def test_parse_assignment_reads_toml_values():
    assert parse_assignment("lr=3e-4") == ("lr", 3e-4)
    assert parse_assignment("hidden_sizes=[64, 64]") == ("hidden_sizes", [64, 64])
    assert parse_assignment("target=double") == ("target", "double")
    assert parse_assignment("target='double'") == ("target", "double")
    with pytest.raises(ConfigError, match="key=value"):
        parse_assignment("lr")


def test_job_hash_changes_with_any_setting_and_seed():
    a = build_job("dqn", "CartPole-v1", 0)
    assert a.hash == build_job("dqn", "CartPole-v1", 0).hash
    assert a.hash != build_job("dqn", "CartPole-v1", 1).hash
    assert a.hash != build_job("dqn", "CartPole-v1", 0, {"lr": 1e-4}).hash


def test_variants_choose_components_and_tasks_set_their_scales():
    huber = build_job("huber_dqn", "CartPole-v1", 0).config
    assert (huber.loss, huber.grad_clip) == ("huber", "norm")
    assert (huber.huber_delta, huber.max_grad_norm) == (100.0, 1000.0)      # CartPole's return scale (issue 25)
    assert build_job("huber_dqn", "Acrobot-v1", 0).config.huber_delta == 1.0  # engine default elsewhere
    plain = build_job("dqn", "CartPole-v1", 0).config
    assert (plain.loss, plain.grad_clip) == ("mse", "off")
