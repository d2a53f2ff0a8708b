"""Notifications: SMTP delivery and the run-finished alert mails."""
