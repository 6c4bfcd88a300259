"""The ``Policy`` protocol of the agents, re-exported from :mod:`mtf_env.policy` where it is defined."""
from mtf_env.policy import Policy, check_obs_batch, reset_policy

__all__ = ["Policy", "check_obs_batch", "reset_policy"]
