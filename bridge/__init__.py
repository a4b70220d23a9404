"""Real-time, two-way bridge between Salesforce CRM and Copernica Marketing Software."""

__version__ = "0.1.0"
