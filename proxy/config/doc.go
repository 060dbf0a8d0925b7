// Package config reads glb-proxy's YAML configuration (DESIGN.md §9; the
// key names are a contract that docs and scripts rely on):
//
//	listen: ":443"                 # HTTPS when tls is set, else plain HTTP
//	listen_plain: ":8080"          # optional plain-HTTP listener
//	tls: {cert_file: /etc/glb/tls.crt, key_file: /etc/glb/tls.key}
//	upstream:
//	  rest: https://api.github.com          # GHES: https://ghe.example.com/api/v3
//	  graphql: https://api.github.com/graphql
//	  git: https://github.com
//	cache:
//	  redis: redis://127.0.0.1:6379/0       # omit for the in-memory default
//	  memory_bytes: 268435456
//	  ttl: 24h
//	credentials:
//	  - {name: bot, pat_env: GITHUB_PAT_BOT}
//	  - {name: ci-app, app_id: 12345, installation_id: 678, private_key_file: /etc/glb/app.pem}
//	clients_file: /etc/glb/clients.yaml
//
// Unknown keys are errors, and every validation error names the field and
// says what to write. Secrets never live in the file: PATs, App keys and
// the Redis password come from environment variables or files, resolved
// by Load into fields that YAML cannot set and that log as "[REDACTED]".
package config
