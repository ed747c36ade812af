"""Fleet control over MQTT: topics, the session, the agent, Home Assistant discovery."""
