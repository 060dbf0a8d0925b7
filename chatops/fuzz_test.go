package chatops

import (
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// FuzzParseSlashCommand: any form body gives a command or an error, and
// what parses is within the limits.
func FuzzParseSlashCommand(f *testing.F) {
	f.Add([]byte(slackExampleBody))
	f.Add([]byte(form("U012AB3CD", "drain proxy-2 kernel upgrade", "https://hooks.slack.com/commands/1")))
	f.Add([]byte("user_id=U1&text=%ZZ"))
	f.Add([]byte("user_id=&text=status"))
	f.Add([]byte("user_id=U1;text=status"))
	f.Add([]byte("user_id=U%00&text=%FF"))
	f.Fuzz(func(t *testing.T, body []byte) {
		c, err := ParseSlashCommand(body)
		if err != nil {
			return
		}
		if c.UserID == "" || len(c.UserID) > maxIDLen || len(c.Text) > maxTextLen {
			t.Fatalf("accepted out-of-limits command %+v", c)
		}
		// Whatever the text, the command parser answers without panicking,
		// and a parsed host can never pass for a flag.
		cmd, err := ParseCommand(c.Text)
		if err == nil && strings.HasPrefix(cmd.Host, "-") {
			t.Fatalf("host %q looks like a flag", cmd.Host)
		}
	})
}

// FuzzParseCommand: chat text never yields a host or table that could be
// read as a flag or a path.
func FuzzParseCommand(f *testing.F) {
	for _, s := range []string{"drain proxy-2 kernel upgrade", "diff drain 10.1.0.12", "status github-api",
		"drain --force --dry-run proxy-2 x", "fill -x", "drain ../../x y", "status --table=x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		cmd, err := ParseCommand(text)
		if err != nil {
			return
		}
		for _, v := range []string{cmd.Host, cmd.Table} {
			if v != "" && !hostPattern.MatchString(v) {
				t.Fatalf("%q parsed into unsafe %q", text, v)
			}
		}
		if changeVerbs[cmd.Verb] && cmd.Host == "" {
			t.Fatalf("%q: a change without a host", text)
		}
	})
}

// FuzzReplayFile: any replay file loads or fails with an error, and what
// loads survives a save and a second load unchanged.
func FuzzReplayFile(f *testing.F) {
	f.Add([]byte("1800000000 v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503\n"))
	f.Add([]byte("1800000000 v0=ab\n1799999999 v0=cd\n"))
	f.Add([]byte(""))
	f.Add([]byte("x v0=ab\n"))
	f.Add([]byte("1800000000 \n"))
	f.Add([]byte("-1 a b\n"))
	now := time.Unix(1_800_000_000, 0)
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		path := filepath.Join(dir, "replay")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		seen, err := loadReplay(path, now)
		if err != nil {
			return
		}
		if err := saveReplay(path, seen); err != nil {
			t.Fatal(err)
		}
		again, err := loadReplay(path, now)
		if err != nil || !maps.Equal(seen, again) {
			t.Fatalf("round trip: %v, %v (%v)", seen, again, err)
		}
	})
}
