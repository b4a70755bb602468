"""The call engine: a thin façade (switchboard.py) over one collaborator per concern; see switchboard.py."""
