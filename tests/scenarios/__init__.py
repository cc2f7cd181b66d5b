"""Scenario tests: a real Celery worker and beat as processes (Stack), and WeChat's concurrent deliveries."""
