"""The catalogue (merchants, places, offers), budgets and redemptions, and the Redis store."""
