"""The asynclm engine: CML, the decode loop, the executor and events. No UI imports."""
