"""Replay: the buffer owns n-step returns and hands the loss per-sample (reward_n, discount_n)."""
