"""qbench list: variants, tasks, settings and suites."""

from __future__ import annotations

import argparse

from qbench.cli.common import _console
from qbench.config import COMPONENT_KEYS, SETTINGS, VARIANTS, Config, ConfigError


def cmd_list(args: argparse.Namespace) -> int:
    from qbench.envs.tasks import TASKS
    from qbench.jobs import HEAD_ACTION_KIND
    from qbench.runner.progress import print_table

    console = _console()
    if args.what == "suites":
        return _list_suites(console)
    if args.what == "variants":
        defaults = Config()
        rows = []
        for name, v in VARIANTS.items():
            settings = {**defaults.to_dict(), **v.settings}
            comps = ", ".join(f"{k}={settings[k]}" for k in COMPONENT_KEYS
                              if k in v.settings or k in ("target", "n_step", "loss", "target_update"))
            rows.append([name, HEAD_ACTION_KIND[settings["q_head"]], comps, v.description])
        print_table(console, "variants (settings that differ from the engine defaults; see 'qbench list settings')",
                    ["variant", "actions", "components", "description"], rows)
    elif args.what == "tasks":
        rows = []
        for t in TASKS.values():
            steps = t.settings.get("total_env_steps", Config().total_env_steps)
            # one per line on a terminal; a pipe gets them on one line, comma-separated
            tuned = ",\n".join(f"{k}={v}" for k, v in t.settings.items() if k != "total_env_steps")
            rows.append([t.name, t.env_id, f"{steps:,}", t.extra or "", tuned, t.sources, t.description])
        print_table(console, "known tasks and their tuned settings (any registered Gymnasium id or module:Class "
                    "also works, with the engine defaults; 'qbench train VARIANT TASK --dry-run' shows a job's; "
                    "epsilon in the uniform form, the ecosystem's, unless a row says otherwise)",
                    ["task", "env id", "default env steps", "extra", "tuned settings", "sources", "description"],
                    rows)
    else:
        rows = []
        defaults = Config().to_dict()
        for name, f in SETTINGS.items():
            m = f.metadata
            bounds = ", ".join(m["choices"]) if m["choices"] else " ".join(
                s for s in (f">{'' if m['exclusive_minimum'] else '='} {m['minimum']}" if m["minimum"] is not None
                            else "", f"<= {m['maximum']}" if m["maximum"] is not None else "") if s)
            rows.append([name, str(defaults[name]), bounds, m["doc"]])
        print_table(console, "settings (--set key=value; values are read as TOML)",
                    ["setting", "default", "choices / bounds", "meaning"], rows)
    return 0


def _list_suites(console) -> int:
    from qbench.runner.progress import print_table
    from qbench.suites import SUITES_DIR, find_suite, list_suites, load_suite

    rows = []
    for name in list_suites():
        path = find_suite(name)
        where = "shipped" if path.parent.resolve() == SUITES_DIR else "./suites"
        try:
            suite = load_suite(path)
        except ConfigError as exc:
            rows.append([name, where, "-", "-", "-", f"invalid: {exc}"])
            continue
        n_jobs = sum(len(e.variants) * (e.seeds or suite.seeds) for e in suite.entries)
        tasks = ", ".join(e.name for e in suite.entries)
        rows.append([name, where, str(suite.seeds), str(n_jobs), tasks, suite.description])
    print_table(console, "suites (qbench run SUITE; your own in ./suites/, found first; the shipped ones "
                f"in {SUITES_DIR})", ["suite", "from", "seeds", "jobs", "tasks", "description"], rows)
    return 0


