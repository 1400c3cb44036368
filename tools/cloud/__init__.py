"""The local cloud: a stand-in for Aliyun IoT with real sockets and real sign checks, one
process (`python -m tools.cloud`) that the end-to-end tests, `make sim`, the soak and the
benchmarks talk to. Its layers, bottom up:

    registry.py   products, devices, tokens, the clock (CloudState); the demo registry
    auth.py       the platform's rules (sign checks of flows A, B, C; login verdicts) and
                  the HTTP auth endpoint with the private control API
    broker.py     the MQTT broker (amqtt) with Aliyun's logins, CONNACK codes, ACL, kick
                  and the platform's own replies (thing model, NTP)
    __main__.py   the cloud process: endpoint + broker on one CloudState, cloud.json
    console.py    the cloud-side console of a running cloud: privileged MQTT client,
                  control API, thing-model requests, the uplink record; and its CLI
    api.py        LocalCloud: starts the process and drives it, for tests and tools
"""
