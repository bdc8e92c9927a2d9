"""Setting up who may use the API in end-to-end tests: tokens through the
real `parleyd --create-token`, and teams and agents straight in the
database for tests of parts that do not manage them themselves."""
from parley_testlib import query


def create_token(run_parleyd, config, role="admin", agent=None, teams=None, name="test"):
    """A new API token's secret, made by parleyd --create-token."""
    args = ["--create-token", name, "--role", role]
    if agent is not None:
        args += ["--agent", agent]
    if teams is not None:
        args += ["--teams", ",".join(str(t) for t in teams)]
    code, out, err = run_parleyd(args, config=config)
    assert code == 0, err
    secret = out.strip()
    assert secret.startswith("prl_") and len(secret) == 47, out
    return secret


def add_team(dsn, name, instances=()):
    """A team owning the given channel instances; returns its id."""
    team_id = query(dsn, "INSERT INTO team (name) VALUES (%s) RETURNING id", (name,))[0][0]
    for inst in instances:
        query(dsn, "INSERT INTO team_channel (team_id, channel_instance) VALUES (%s, %s)",
              (team_id, inst))
    return team_id


def add_agent(dsn, email, name, role="agent", teams=(), availability="offline", capacity=10,
              languages=()):
    """An agent (no password) in the given teams; returns its id."""
    agent_id = query(dsn, "INSERT INTO agent (email, name, role, availability, capacity, languages) "
                          "VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
                     (email, name, role, availability, capacity, list(languages)))[0][0]
    for t in teams:
        query(dsn, "INSERT INTO agent_team (agent_id, team_id) VALUES (%s, %s)", (agent_id, t))
    return agent_id
