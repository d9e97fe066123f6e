"""The admin API: an aiohttp application inside the scorer process (registry, model, health, metrics,
predict, webhooks, fleet). Start point: ``admin_api.app.create_app``."""
