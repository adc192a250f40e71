"""Hyperparameters, named variants and their validation: configuration is data.

Resolution order for one job: engine defaults -> task's tuned hyperparameters -> variant -> overrides (suite, then
``--set``). A variant comes after the task because it *is* its settings (``online_q`` means a buffer of one,
whatever batch size the task was tuned with); anything can still be overridden explicitly.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import math
import tomllib
from dataclasses import dataclass, field
from typing import Any

# The n-step corrections that weigh each later step of a window by a trace coefficient (qbench.parts.targets).
# The most seeds one command or suite entry expands to: more is a typo (0-99999999), and its job list alone
# would fill the memory before anything is checked. The theory suite runs 1,000.
MAX_SEEDS = 100_000
# The largest seed: results store seeds as 64-bit integers (pandas Int64).
MAX_SEED = 2 ** 63 - 1
TRACE_CORRECTIONS = ("importance_sampling", "retrace", "tree_backup")


class ConfigError(ValueError):
    """A user mistake in a variant, task, suite or override. Its message is one line meant for the user."""


def _setting(default: Any, doc: str, *, choices: tuple[str, ...] | None = None, minimum: float | None = None,
             maximum: float | None = None, exclusive_minimum: bool = False) -> Any:
    meta = {"doc": doc, "choices": choices, "minimum": minimum, "maximum": maximum,
            "exclusive_minimum": exclusive_minimum}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class Config:
    """Every knob of the engine. Each field is one slot choice or one number, with its unit in the name."""

    # --- q head and maximiser
    q_head: str = _setting("discrete", "how Q(s, a) is computed: discrete (one output per action), table (one "
                           "entry per state and action, zero at the start: a linear Q without bias on one-hot "
                           "states; Discrete observations only), state_action (the action is an input), naf "
                           "(V(s) - 1/2 (a-mu)^T P (a-mu))", choices=("discrete", "table", "state_action", "naf"))
    maximiser: str = _setting("exact", "how argmax_a Q is found: exact over a discrete set, random (uniform "
                              "samples), cem (cross-entropy method), naf (mu(s) in closed form), actor (a learned "
                              "deterministic policy, DDPG)", choices=("exact", "random", "cem", "naf", "actor"))
    hidden_sizes: list = _setting([256, 256], "hidden layer widths of every MLP (ReLU); with an image encoder, "
                                  "the widths after it")
    encoder: str = _setting("auto", "what reads the observation before the MLP: auto (nature_cnn for image "
                            "observations, none for vectors), none, nature_cnn (Mnih et al. 2015: conv 32 8x8/4, "
                            "64 4x4/2, 64 3x3/1), minatar_cnn (Young and Tian 2019: conv 16 3x3/1)",
                            choices=("auto", "none", "nature_cnn", "minatar_cnn"))
    image_layout: str = _setting("auto", "axis order of image observations: channels_first (C, H, W), "
                                 "channels_last (H, W, C), or auto (channels first when the first axis is the "
                                 "shortest, e.g. a (4, 84, 84) frame stack; else channels last, e.g. MinAtar's "
                                 "(10, 10, C))", choices=("auto", "channels_first", "channels_last"))
    device: str = _setting("cpu", "where the networks run: cpu, cuda, or auto (cuda when torch sees a GPU); "
                           "replay and envs stay on the CPU", choices=("cpu", "cuda", "auto"))
    observation_scaling: str = _setting("none", "Box observations as the env gives them (none), or mapped "
                                        "affinely from the space's finite bounds to [-1, 1] (bounds); Discrete "
                                        "observations are one-hot either way", choices=("none", "bounds"))
    random_samples_act: int = _setting(1000, "random maximiser: uniform actions drawn when acting", minimum=1)
    random_samples_target: int = _setting(100, "random maximiser: uniform actions drawn per target (inner loop)",
                                          minimum=1)
    cem_iterations: int = _setting(3, "CEM: Gaussian refits", minimum=1)
    cem_population: int = _setting(64, "CEM: actions sampled per iteration", minimum=2)
    cem_elites: int = _setting(6, "CEM: best actions the Gaussian is refitted to", minimum=1)
    actor_lr: float = _setting(1e-3, "actor maximiser (DDPG): learning rate of the actor", minimum=0.0,
                               exclusive_minimum=True)
    # --- target and returns
    target: str = _setting("max", "bootstrap value: max under the target net, or double (online selects, target "
                           "evaluates), or policy (target critic at the target actor's action, DDPG)", choices=("max", "double", "policy"))
    n_step: int = _setting(1, "rewards summed before bootstrapping (at the start, when n_step_end anneals it)",
                           minimum=1)
    n_step_end: int = _setting(0, "n after annealing: n goes linearly from n_step to n_step_end over the first "
                               "n_step_decay_fraction of the run, rounded to the nearest integer (0: no "
                               "annealing, n stays n_step); the buffer serves every n up to the larger",
                               minimum=0)
    n_step_decay_fraction: float = _setting(0.5, "fraction of total_env_steps over which n anneals to n_step_end",
                                            minimum=0.0, maximum=1.0)
    nstep_correction: str = _setting("ignore", "off-policy correction for n_step > 1: ignore (the later actions "
                                     "came from an older, exploring policy and the return uses them as they are); "
                                     "cut (Watkins 1989: the trace stops at the first later action that is not "
                                     "greedy under the online Q); importance_sampling (per-decision weights rho = "
                                     "pi/mu on the later actions, Precup et al. 2000, truncated at is_clip); "
                                     "retrace (c = trace_lambda min(1, rho), Munos et al. 2016); tree_backup (c = "
                                     "trace_lambda pi, Precup et al. 2000). The last three use the general form of "
                                     "Munos et al. (2016): y = Q'(s, a) + sum_j gamma^j c_1..c_j delta_j, with "
                                     "delta_j = r_j + gamma E_pi Q'(s_j+1) - Q'(s_j, a_j); pi is is_target_eps-greedy "
                                     "w.r.t. the net that selects the bootstrap action (target net for target max, "
                                     "online net for double); discrete actions only",
                                     choices=("ignore", "cut", "importance_sampling", "retrace", "tree_backup"))
    is_target_eps: float = _setting(0.0, "importance_sampling, retrace, tree_backup: epsilon of the target policy "
                                    "pi (0: greedy, the Q-learning target, whose weights are 0 or 1/mu; above 0 "
                                    "pi is epsilon-greedy like the behaviour, and the fixed point is its Q)",
                                    minimum=0.0, maximum=1.0)
    is_clip: float = _setting(0.0, "importance_sampling: truncate each per-decision weight pi/mu at this value "
                              "(0: no truncation, unbiased)", minimum=0.0)
    trace_lambda: float = _setting(1.0, "retrace, tree_backup: lambda in their trace coefficients c", minimum=0.0,
                                   maximum=1.0)
    gamma: float = _setting(0.99, "discount factor per env step", minimum=0.0, maximum=1.0)
    reward_clip: float = _setting(0.0, "clip the rewards the learner sees to [-reward_clip, reward_clip] (0: no "
                                  "clipping); training returns in the logs and every evaluation stay unclipped "
                                  "game scores", minimum=0.0)
    reward_scale: float = _setting(1.0, "multiply the rewards the learner sees (after reward_clip) by this; Q, "
                                   "the targets and the divergence watch are in these units, training returns "
                                   "in the logs and every evaluation stay game scores", minimum=0.0,
                                   exclusive_minimum=True)
    terminal_on_life_loss: bool = _setting(False, "Atari: a lost life ends the return for learning (discount 0) "
                                           "while the game goes on; never at evaluation. Off by default, as "
                                           "Machado et al. (2018) recommend")
    target_gradient: str = _setting("none", "the gradient of the TD loss: none (semi-gradient: the target is held "
                                    "constant, the default of every variant), or residual (Baird 1995: the "
                                    "gradient of the squared Bellman error through the target too; needs "
                                    "target_update none, since a target network has no gradient to give)",
                                    choices=("none", "residual"))
    # --- loss and optimiser
    loss: str = _setting("mse", "regression loss: mse is 0.5*err^2, huber is 0.5*err^2 inside delta and linear "
                         "beyond", choices=("mse", "huber"))
    huber_delta: float = _setting(1.0, "Huber threshold on the TD error, in the task's return units (tasks tune it)",
                                  minimum=0.0, exclusive_minimum=True)
    grad_clip: str = _setting("off", "gradient clipping: off, or norm (scale the global gradient norm down to "
                              "max_grad_norm)", choices=("off", "norm"))
    max_grad_norm: float = _setting(10.0, "threshold of grad_clip = norm; gradient norms scale with the task's "
                                    "returns, so tasks tune it", minimum=0.0, exclusive_minimum=True)
    optimizer: str = _setting("adam", "optimiser of the Q network: adam, rmsprop, or sgd (plain steps of lr "
                              "times the gradient: with q_head table, mse and a batch of one, Q(s, a) += lr (y - "
                              "Q(s, a)), Watkins' update at step size lr)", choices=("adam", "rmsprop", "sgd"))
    # torch.optim.RMSprop's parameters (no momentum): v <- alpha v + (1 - alpha) g^2, centred: m <- alpha m +
    # (1 - alpha) g and v - m^2 in place of v; step lr g / (sqrt(v) + eps), eps added after the square root. The
    # MinAtar paper's examples/dqn.py is torch's RMSprop(alpha=0.95, centered=True, eps=0.01), so these map 1:1
    # (its "min squared gradient" 0.01 is torch's eps; in DeepMind's DQN the same name sits inside the root).
    rmsprop_centered: bool = _setting(False, "optimizer rmsprop: centred (Graves 2013: the gradient's variance, "
                                      "its second moment minus its squared running mean, in place of the "
                                      "second moment), as torch's RMSprop(centered=True)")
    rmsprop_alpha: float = _setting(0.99, "optimizer rmsprop: decay of the running (squared) gradient means, "
                                    "torch's alpha (the MinAtar paper: 0.95, its 'squared gradient momentum')",
                                    minimum=0.0, maximum=1.0)
    rmsprop_eps: float = _setting(1e-8, "optimizer rmsprop: added to the root of the second moment before "
                                  "dividing, torch's eps (the MinAtar paper: 0.01, its 'min squared gradient')",
                                  minimum=0.0, exclusive_minimum=True)
    lr: float = _setting(1e-3, "learning rate at the start", minimum=0.0, exclusive_minimum=True)
    lr_schedule: str = _setting("constant", "learning-rate schedule over the run", choices=("constant", "linear"))
    lr_end: float = _setting(0.0, "learning rate after the decay when lr_schedule is linear", minimum=0.0)
    lr_decay_fraction: float = _setting(1.0, "fraction of total_env_steps over which the learning rate decays "
                                        "linearly to lr_end (then stays there)", minimum=0.0, maximum=1.0)
    # --- target update
    target_update: str = _setting("hard", "how the target net follows the online net: hard copy every "
                                  "target_period_grad_steps, polyak averaging every gradient step, none (the "
                                  "online net is its own target: no lag), or swap (two estimators trained alike: "
                                  "before each gradient step they exchange roles with probability 1/2, so with "
                                  "target double each step updates one at random, selected by itself and "
                                  "evaluated by the other: Double Q-learning, van Hasselt 2010; the behaviour "
                                  "and evaluation act on their mean)", choices=("hard", "polyak", "none", "swap"))
    target_period_grad_steps: int = _setting(500, "gradient steps between hard target copies", minimum=1)
    tau: float = _setting(0.005, "polyak rate: target <- tau*online + (1-tau)*target", minimum=0.0, maximum=1.0,
                          exclusive_minimum=True)
    # --- exploration
    exploration: str = _setting("epsilon_greedy", "behaviour policy for discrete actions",
                                choices=("epsilon_greedy", "boltzmann"))
    epsilon_form: str = _setting("uniform", "what epsilon means: uniform (the ecosystem's: Stable-Baselines3, "
                                 "rl-baselines3-zoo, CleanRL, Dopamine, the MinAtar paper, Sutton and Barto: with "
                                 "probability eps a uniformly random action, the greedy one included) or non_greedy "
                                 "(the lecture's: 1 - eps on the greedy action, eps/(|A|-1) on each other, eps capped "
                                 "at (|A|-1)/|A|, the uniform policy); non_greedy eps = uniform eps (|A|-1)/|A|. "
                                 "Applies to eps_start/eps_end and is_target_eps", choices=("uniform", "non_greedy"))
    eps_start: float = _setting(1.0, "epsilon at the start, in epsilon_form's meaning (eps = 1 is the uniform "
                                "policy in both forms)", minimum=0.0, maximum=1.0)
    eps_end: float = _setting(0.05, "epsilon after the decay", minimum=0.0, maximum=1.0)
    eps_decay_fraction: float = _setting(0.1, "fraction of total_env_steps over which epsilon decays linearly",
                                         minimum=0.0, maximum=1.0)
    temperature_start: float = _setting(1.0, "Boltzmann temperature at the start", minimum=0.0,
                                        exclusive_minimum=True)
    temperature_end: float = _setting(0.01, "Boltzmann temperature after the decay", minimum=0.0,
                                      exclusive_minimum=True)
    temperature_decay_fraction: float = _setting(0.1, "fraction of total_env_steps over which the temperature "
                                                 "decays linearly", minimum=0.0, maximum=1.0)
    action_noise: str = _setting("gaussian", "behaviour policy for Box actions: the greedy action plus Gaussian "
                                 "or Ornstein-Uhlenbeck noise, clipped to the bounds", choices=("gaussian", "ou"))
    noise_std: float = _setting(0.1, "Gaussian std, or OU sigma, in units of half the action range", minimum=0.0)
    ou_theta: float = _setting(0.15, "OU mean reversion rate", minimum=0.0)
    ou_dt: float = _setting(0.01, "OU time step", minimum=0.0, exclusive_minimum=True)
    # --- replay and rates (the "general view": collection, regression and target update each have a rate)
    buffer_size: int = _setting(100_000, "replay capacity in transitions (1 = online, no replay)", minimum=1)
    batch_size: int = _setting(64, "transitions per gradient step", minimum=1)
    warmup_env_steps: int = _setting(1000, "env steps collected before the first update", minimum=0)
    env_steps_per_update: int = _setting(4, "env steps collected between two updates", minimum=1)
    grad_steps_per_update: int = _setting(1, "gradient steps taken at each update", minimum=1)
    # --- run length, evaluation and logging
    total_env_steps: int = _setting(50_000, "env steps of training (at most 1e12: about 3 years at 10,000 env steps "
                                    "a second; beyond it a run cannot end)", minimum=1, maximum=10**12)
    eval_interval_env_steps: int = _setting(5_000, "env steps between greedy evaluations (one more at the end)",
                                            minimum=1)
    eval_episodes: int = _setting(10, "episodes per evaluation, on a separate, separately seeded env", minimum=1)
    eval_max_episode_steps: int = _setting(10_000, "cap on the steps of one evaluation episode (a greedy policy "
                                           "on an env without a time limit may never end); episodes cut by it "
                                           "are counted in evaluations.csv (capped_episodes)", minimum=1)
    log_interval_env_steps: int = _setting(1_000, "env steps between rows of training diagnostics", minimum=1)
    checkpoint_interval_env_steps: int = _setting(10_000, "env steps between checkpoints for resuming (taken at "
                                                  "the next episode end)", minimum=1)
    torch_threads: int = _setting(1, "torch intra-op threads for this run", minimum=1)
    divergence_stop_factor: float = _setting(1000.0, "divergence watch: a seed whose |Q| on a sampled batch "
                                             "exceeds this many value scales is stopped and recorded as diverged "
                                             "(one value scale: max(r_max, 1) / (1 - gamma), r_max the largest "
                                             "|reward| the learner has seen; at gamma 1 the longest episode "
                                             "replaces 1 / (1 - gamma)); 0 switches the level off; NaN and inf "
                                             "stop a seed regardless", minimum=0.0)
    divergence_warn_factor: float = _setting(5.0, "divergence watch: a seed whose |Q| passes this many value "
                                             "scales is flagged (summary.json's divergence_watch, counted in "
                                             "the report), never stopped for it", minimum=0.0,
                                             exclusive_minimum=True)
    # --- the Atari protocol (Machado et al. 2018), for ALE tasks only; recorded with every run in config.json
    sticky_action_prob: float = _setting(0.25, "ALE and MinAtar: probability that the env repeats the previous "
                                         "action instead of the chosen one, per frame (MinAtar tasks set 0.1, "
                                         "its own default)", minimum=0.0, maximum=1.0)
    frame_skip: int = _setting(4, "ALE: frames per agent step (the action repeated, the last two frames "
                               "max-pooled); env_steps count agent steps, frames = env_steps * frame_skip",
                               minimum=1)
    frame_stack: int = _setting(4, "ALE: frames stacked into one observation", minimum=1)
    screen_size: int = _setting(84, "ALE: side of the square greyscale observation", minimum=8)
    noop_max: int = _setting(0, "ALE: up to this many no-op actions after each reset (0: none; sticky actions "
                             "already make starts random)", minimum=0)
    max_episode_frames: int = _setting(108_000, "ALE: frames after which an episode is truncated (108k = 30 "
                                       "minutes of play)", minimum=1)
    full_action_space: bool = _setting(False, "ALE: all 18 actions (true) or the game's minimal set (false)")
    minatar_action_set: str = _setting("minimal", "MinAtar: the game's minimal action set (minimal: 3 to 6 "
                                       "actions, as the MinAtar/...-v1 ids register it) or all 6 actions of every "
                                       "game (full: what the MinAtar paper's DQN acts on)",
                                       choices=("minimal", "full"))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


SETTINGS: dict[str, dataclasses.Field] = {f.name: f for f in dataclasses.fields(Config)}


@dataclass(frozen=True)
class Variant:
    """A named composition of the engine's parts: only the settings that differ from the engine defaults."""

    name: str
    description: str
    settings: dict[str, Any]


_DQN = "replay buffer + hard target network"
# No replay and no lag: every env step is one gradient step on the transition just seen.
_ONLINE = {"buffer_size": 1, "batch_size": 1, "warmup_env_steps": 0, "env_steps_per_update": 1,
           "grad_steps_per_update": 1, "target_update": "none"}
VARIANTS: dict[str, Variant] = {v.name: v for v in [
    Variant("dqn", f"DQN: {_DQN}, max target, 1-step, MSE loss", {}),
    Variant("double_dqn", f"Double DQN: {_DQN}, online net selects and target net evaluates", {"target": "double"}),
    Variant("nstep_dqn", f"N-step DQN: {_DQN}, 3-step returns, no off-policy correction", {"n_step": 3}),
    Variant("nstep_cut_dqn", f"N-step DQN whose trace is cut at the first later non-greedy action (Watkins): "
            f"{_DQN}, 3-step", {"n_step": 3, "nstep_correction": "cut"}),
    Variant("nstep_is_dqn", f"N-step DQN with per-decision importance sampling (Precup et al. 2000) towards an "
            f"0.01-greedy target policy: {_DQN}, 3-step",
            {"n_step": 3, "nstep_correction": "importance_sampling", "is_target_eps": 0.01}),
    Variant("retrace_dqn", f"Retrace (Munos et al. 2016), c = min(1, pi/mu), towards an 0.01-greedy target "
            f"policy: {_DQN}, 3-step", {"n_step": 3, "nstep_correction": "retrace", "is_target_eps": 0.01}),
    Variant("tree_backup_dqn", f"Tree-backup (Precup et al. 2000), c = pi, towards an 0.01-greedy target policy: "
            f"{_DQN}, 3-step", {"n_step": 3, "nstep_correction": "tree_backup", "is_target_eps": 0.01}),
    Variant("huber_dqn", f"DQN with Huber loss and gradient-norm clipping (thresholds from the task): {_DQN}",
            {"loss": "huber", "grad_clip": "norm"}),
    Variant("double_nstep_huber_dqn", f"Double + 3-step + Huber + gradient-norm clipping: {_DQN}",
            {"target": "double", "n_step": 3, "loss": "huber", "grad_clip": "norm"}),
    Variant("annealed_nstep_dqn", f"N-step DQN whose n anneals from 3 to 1 over the first half of the run (n-step "
            f"while Q is still poor, 1-step once it is not): {_DQN}",
            {"n_step": 3, "n_step_end": 1, "n_step_decay_fraction": 0.5}),
    Variant("residual_q", "Residual-gradient Q-learning (Baird 1995): online Q-learning whose update is the "
            "gradient of the squared Bellman error through both Q(s, a) and the target",
            {"buffer_size": 1, "batch_size": 1, "warmup_env_steps": 1, "env_steps_per_update": 1,
             "grad_steps_per_update": 1, "target_update": "none", "target_gradient": "residual"}),
    Variant("online_q", "Online Q-learning: no replay (buffer of 1), one gradient step per env step, no target lag",
            {"buffer_size": 1, "batch_size": 1, "warmup_env_steps": 1, "env_steps_per_update": 1,
             "grad_steps_per_update": 1, "target_update": "none"}),
    Variant("tabular_q", "Watkins' Q-learning: a table (zero at the start), constant step size lr = 0.1, no "
            "replay (buffer of 1), no target lag", {"q_head": "table", "optimizer": "sgd", "lr": 0.1,
                                                   "lr_schedule": "constant", "loss": "mse", **_ONLINE}),
    Variant("tabular_double_q", "Double Q-learning (van Hasselt 2010): two tables, one updated at random per "
            "step, selected by itself and evaluated by the other; acts on their mean",
            {"q_head": "table", "optimizer": "sgd", "lr": 0.1, "lr_schedule": "constant", "loss": "mse",
             **_ONLINE, "target": "double", "target_update": "swap"}),
    Variant("fitted_q", "Fitted Q-iteration: collect 1000 env steps, then 4 target refreshes of 250 gradient "
            "steps each", {"env_steps_per_update": 1000, "grad_steps_per_update": 1000,
                           "target_period_grad_steps": 250, "target_update": "hard"}),
    # Continuous actions. Sampling maximisers evaluate Q thousands of times per gradient step, so their critic is
    # small by definition; hidden_sizes can still be overridden.
    Variant("random_q", "Q(s, a) with the action as input, maximised by the best of N uniform actions (1000 to act, "
            "100 per target)", {"q_head": "state_action", "maximiser": "random", "hidden_sizes": [64, 64]}),
    Variant("cem_q", "Q(s, a) with the action as input, maximised by the cross-entropy method (3 iterations of 64, "
            "6 elites); double target", {"q_head": "state_action", "maximiser": "cem", "target": "double",
                                         "hidden_sizes": [64, 64]}),
    # NAF's own settings, PFRL's NAF example (examples/gym/train_dqn_gym.py on a Box space): 2 x 100 units, Adam 1e-3,
    # batch 32, learning from 1000 env steps, a gradient step per env step, a hard target copy every 100, rewards x
    # 1e-3, additive OU noise of sigma 0.2 x the action range (0.4 in units of half the range), theta 0.15, dt 1;
    # the task keeps its discount, replay size and budget. Chosen on Pendulum-v1 seeds 100-104 among 4 candidates
    # (benchmarks/tuning/issue25_naf.sh; docs/history.md "NAF's settings"): with DDPG's settings, or unscaled rewards, NAF
    # stays near -1,300 on most seeds.
    Variant("naf", "Normalised advantage functions: Q = V(s) - 1/2 (a - mu(s))^T P(s) (a - mu(s)), argmax mu(s); "
            "PFRL's NAF settings", {"q_head": "naf", "maximiser": "naf", "hidden_sizes": [100, 100], "lr": 1e-3,
                                    "batch_size": 32, "warmup_env_steps": 1000, "env_steps_per_update": 1,
                                    "grad_steps_per_update": 1, "target_update": "hard",
                                    "target_period_grad_steps": 100, "reward_scale": 1e-3, "action_noise": "ou",
                                    "noise_std": 0.4, "ou_theta": 0.15, "ou_dt": 1.0}),
    Variant("ddpg", "DDPG: a deterministic actor is the learned maximiser; target critic at the target actor's "
            "action; polyak targets", {"q_head": "state_action", "maximiser": "actor", "target": "policy",
                                       "target_update": "polyak"}),
]}

# Which settings describe a variant's composition, for `qbench list variants`.
COMPONENT_KEYS = ("q_head", "maximiser", "target", "target_gradient", "n_step", "n_step_end", "nstep_correction",
                  "is_target_eps",
                  "loss", "grad_clip",
                  "target_update", "exploration", "buffer_size", "env_steps_per_update", "grad_steps_per_update",
                  "target_period_grad_steps")


def choices_line(names: Any) -> str:
    return ", ".join(sorted(names))


def unknown(kind: str, name: str, valid: Any) -> ConfigError:
    """The one-line error for a name that is not among the valid ones, with a close match when there is one."""
    valid = sorted(valid)
    close = difflib.get_close_matches(name, valid, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return ConfigError(f"unknown {kind} '{name}'{hint}; valid {kind}s: {', '.join(valid)}")


def get_variant(name: str, extra: dict[str, Variant] | None = None) -> Variant:
    table = {**VARIANTS, **(extra or {})}
    if name not in table:
        raise unknown("variant", name, table)
    return table[name]


def coerce_setting(key: str, value: Any) -> Any:
    """Check one setting against its declared type, choices and bounds; return it in its canonical type."""
    if key not in SETTINGS:
        raise unknown("setting", key, SETTINGS)
    f = SETTINGS[key]
    meta = f.metadata
    kind = f.type
    bad = ConfigError(f"setting '{key}' must be {kind}, got {value!r}")
    if kind == "bool":
        if not isinstance(value, bool):
            raise bad
    elif kind == "int":
        if isinstance(value, bool):
            raise bad
        if isinstance(value, float) and value.is_integer():  # TOML reads 1e5 as a float
            value = int(value)
        if not isinstance(value, int):
            raise bad
    elif kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad
        value = float(value)
        if not math.isfinite(value):   # NaN passes every bound check below (each comparison is False)
            raise ConfigError(f"setting '{key}' must be a finite number, got {value}")
    elif kind == "str":
        if not isinstance(value, str):
            raise bad
    elif kind == "list":
        if not isinstance(value, list) or not value or not all(
                isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value):
            raise ConfigError(f"setting '{key}' must be a non-empty list of positive integers, got {value!r}")
        return list(value)
    if meta["choices"] is not None and value not in meta["choices"]:
        raise ConfigError(f"setting '{key}' has no choice '{value}'; valid choices: {', '.join(meta['choices'])}")
    lo, hi = meta["minimum"], meta["maximum"]
    if lo is not None and (value < lo or (meta["exclusive_minimum"] and value == lo)):
        op = ">" if meta["exclusive_minimum"] else ">="
        raise ConfigError(f"setting '{key}' must be {op} {lo}, got {value}")
    if hi is not None and value > hi:
        raise ConfigError(f"setting '{key}' must be <= {hi}, got {value}")
    return value


def parse_assignment(text: str) -> tuple[str, Any]:
    """Parse one ``key=value`` from the command line; the value is read as a TOML value, else as a bare string."""
    key, sep, raw = text.partition("=")
    key, raw = key.strip(), raw.strip()
    if not sep or not key:
        raise ConfigError(f"override '{text}' is not of the form key=value")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key, value


# Which maximisers can serve each q head.
HEAD_MAXIMISERS = {"discrete": ("exact",), "table": ("exact",), "state_action": ("random", "cem", "actor"),
                   "naf": ("naf", "random", "cem")}


def check_consistency(cfg: Config) -> None:
    """Refuse combinations of parts that do not make sense together, naming what would work."""
    fits = HEAD_MAXIMISERS[cfg.q_head]
    if cfg.maximiser not in fits:
        raise ConfigError(f"maximiser '{cfg.maximiser}' does not fit q_head '{cfg.q_head}'; maximisers for "
                          f"{cfg.q_head}: {', '.join(fits)}")
    if cfg.target == "policy" and cfg.maximiser != "actor":
        raise ConfigError("target 'policy' needs maximiser 'actor' (a target actor); use target max or double")
    if cfg.cem_elites > cfg.cem_population:
        raise ConfigError(f"cem_elites ({cfg.cem_elites}) exceeds cem_population ({cfg.cem_population})")
    if cfg.target in ("double", "policy") and cfg.target_update == "none":
        raise ConfigError(f"target '{cfg.target}' needs a target network; set target_update to hard or polyak")
    if cfg.target_update == "swap" and cfg.optimizer != "sgd":
        raise ConfigError(f"target_update 'swap' exchanges the two estimators' parameters and optimizer "
                          f"'{cfg.optimizer}' keeps a state per parameter that would stay behind; use optimizer sgd")
    if cfg.target_update == "swap" and cfg.q_head not in ("discrete", "table"):
        raise ConfigError(f"target_update 'swap' acts on the mean of two estimators, which q_head "
                          f"'{cfg.q_head}' does not provide; q heads for swap: discrete, table")
    if cfg.target_update == "swap" and cfg.target != "double":
        raise ConfigError("target_update 'swap' trains two estimators that evaluate each other's choice; it "
                          "needs target 'double' (with target max each would bootstrap from the other's own max, which keeps the "
                          "maximisation bias)")
    if cfg.batch_size > cfg.buffer_size:
        raise ConfigError(f"batch_size ({cfg.batch_size}) exceeds buffer_size ({cfg.buffer_size}); "
                          f"lower batch_size or raise buffer_size")
    if cfg.target_gradient == "residual" and cfg.target_update != "none":
        raise ConfigError(f"target_gradient 'residual' differentiates the target, and target_update "
                          f"'{cfg.target_update}' makes it a frozen network with no gradient; set target_update none")
    if cfg.target_gradient == "residual" and cfg.maximiser not in ("exact", "naf"):
        raise ConfigError(f"target_gradient 'residual' needs a maximiser whose max is differentiable in Q; "
                          f"maximiser '{cfg.maximiser}' picks actions by sampling or a learned actor; maximisers "
                          "for residual: exact, naf")
    if cfg.nstep_correction != "ignore" and not is_multi_step(cfg):
        raise ConfigError(f"nstep_correction '{cfg.nstep_correction}' corrects n-step returns and does nothing "
                          "with n_step = 1; set n_step > 1 or nstep_correction 'ignore'")
    traced = TRACE_CORRECTIONS
    for key, default, uses in (("is_target_eps", 0.0, traced), ("is_clip", 0.0, ("importance_sampling",)),
                               ("trace_lambda", 1.0, ("retrace", "tree_backup"))):
        if getattr(cfg, key) != default and cfg.nstep_correction not in uses:
            raise ConfigError(f"setting '{key}' applies to nstep_correction {' or '.join(uses)}, not "
                              f"'{cfg.nstep_correction}'; set nstep_correction or leave {key} at {default:g}")
    defaults = Config()
    for key in ("rmsprop_centered", "rmsprop_alpha", "rmsprop_eps"):
        if getattr(cfg, key) != getattr(defaults, key) and cfg.optimizer != "rmsprop":
            raise ConfigError(f"setting '{key}' applies to optimizer rmsprop, not '{cfg.optimizer}'; set optimizer "
                              f"rmsprop or leave {key} at {getattr(defaults, key)}; valid optimizers: adam, "
                              "rmsprop, sgd")
    if cfg.nstep_correction in traced and cfg.target not in ("max", "double"):
        raise ConfigError(f"nstep_correction '{cfg.nstep_correction}' weighs actions by pi(a|s) / mu(a|s) for a "
                          f"discrete pi; target '{cfg.target}' has a learned continuous policy; use target max or "
                          "double")
    if cfg.divergence_stop_factor and cfg.divergence_stop_factor < cfg.divergence_warn_factor:
        raise ConfigError(f"divergence_stop_factor ({cfg.divergence_stop_factor:g}) is below "
                          f"divergence_warn_factor ({cfg.divergence_warn_factor:g}): a seed would be stopped before "
                          "it is flagged; set the stop factor above the warning (or 0: no level stop)")
    if max_n_step(cfg) > cfg.buffer_size:
        raise ConfigError(f"n_step ({max_n_step(cfg)}) exceeds buffer_size ({cfg.buffer_size})")


def frames_per_env_step(env_id: str, frame_skip: int) -> int:
    """Emulator frames per env step, the one rule: an ALE env (id ALE/...) repeats each agent action frame_skip
    frames, so its env steps are agent steps of frame_skip frames; every other env step is one step."""
    return frame_skip if env_id.startswith("ALE/") else 1


def max_n_step(cfg: Config) -> int:
    """The longest n-step window the run uses (the buffer serves every n up to it)."""
    return max(cfg.n_step, cfg.n_step_end)


def is_multi_step(cfg: Config) -> bool:
    """Whether any target of the run spans more than one step (then corrections, trace lengths and windows apply)."""
    return max_n_step(cfg) > 1


def n_step_at(cfg: Config, progress: float) -> int:
    """n at a fraction of the run: n_step, or annealed linearly to n_step_end and rounded to the nearest integer
    (halves round up, so 3 -> 1 over half a run is 3 for the first eighth, then 2, then 1 after three eighths)."""
    if cfg.n_step_end == 0 or cfg.n_step_end == cfg.n_step:
        return cfg.n_step
    if cfg.n_step_decay_fraction <= 0:
        return cfg.n_step_end
    frac = min(progress / cfg.n_step_decay_fraction, 1.0)
    return math.floor(cfg.n_step + frac * (cfg.n_step_end - cfg.n_step) + 0.5)


def resolve(variant: Variant, task_settings: dict[str, Any], *override_layers: dict[str, Any]) -> Config:
    """Engine defaults -> task -> variant -> each override layer in order; every value is checked."""
    merged: dict[str, Any] = {}
    for layer in (task_settings, variant.settings, *override_layers):
        for key, value in layer.items():
            merged[key] = coerce_setting(key, value)
    cfg = Config(**merged)
    check_consistency(cfg)
    return cfg


def resolve_with_sources(variant: Variant, task_settings: dict[str, Any],
                         *named_layers: tuple[str, dict[str, Any]]) -> tuple[Config, dict[str, str]]:
    """``resolve`` with each override layer named, and for every setting the layer its value came from:
    'default', 'task', 'variant' or an override layer's name (the last layer that sets it wins, as in resolve)."""
    cfg = resolve(variant, task_settings, *(layer for _, layer in named_layers))
    sources = dict.fromkeys(SETTINGS, "default")
    for name, layer in (("task", task_settings), ("variant", variant.settings), *named_layers):
        for key in layer:
            sources[key] = name
    return cfg, sources


def config_hash(payload: dict[str, Any]) -> str:
    """A short stable hash of a resolved job (variant, task, seed and settings): it names the run directory."""
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:10]
