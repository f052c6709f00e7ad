"""Connectra Jobs: an asyncio job runner for bulk CSV jobs."""
