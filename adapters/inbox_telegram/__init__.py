"""The Telegram channel: a bot's updates or a user account's chat history, via telethon."""
