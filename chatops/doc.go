// Package chatops lets on-call engineers drain and fill glb hosts from
// chat. It serves Slack slash commands ("/glb drain proxy-2 kernel
// upgrade") and a plain JSON endpoint for other chat bots, and hands each
// command to an Executor (glbctl runs its own commands, so chat answers
// with exactly the text the CLI prints).
//
// Requests are checked in this order:
//
//  1. Slack: the X-Slack-Request-Timestamp must be within 5 minutes of now
//     in either direction (else 401), the v0 HMAC-SHA256 signature over
//     "v0:TIMESTAMP:BODY" must match X-Slack-Signature (compared in
//     constant time; else 401), and a signature seen before within the
//     window is a replay (409). The signatures seen are kept in
//     Config.ReplayFile, so a restart does not reopen the window (without
//     it they live in memory only). JSON endpoint: the bearer token must
//     match (constant time; else 401).
//  2. Slack: if the allow-list names teams, the request's workspace
//     (team_id) must be one of them, and a user entry that names a team
//     matches only requests from it. The user must be on the allow-list
//     to change anything. Slack gets a
//     200 with a refusal in chat (Slack shows any other status as a bare
//     "failed" error, which tells the user nothing); the JSON endpoint gets
//     a 403. status, diff and help are open to every user of the workspace
//     unless the allow-list says "readers: listed".
//
// Every change, and every refused attempt to change, is written to the
// audit log as one JSON line (who, what, host, reason, result).
//
// Slack wants an answer within 3 seconds: a command that takes longer is
// answered "working on it" at once and its result is posted to the
// request's response_url, which must be on Slack's hooks host.
package chatops
