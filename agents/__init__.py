"""The agents layer: policies, the trainable agents (one :class:`agents.base.Agent` base class) and the
Conservative-OPEstimator, trained on logged data or in the simulator."""
