"""smsline: the SMS service of a customer-support system."""
