"""Notifications: SMTP delivery (`smtp`) and the alert mails of a finished run (`alerts`)."""
