"""Full screens: the dashboard, a run's view, the chat; one per module."""
