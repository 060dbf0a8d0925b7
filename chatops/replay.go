package chatops

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/glb-project/glb/internal/atomicfile"
)

// The replay file holds one line per Slack signature served within the
// window: "UNIX_SECONDS SIGNATURE". A signature is an HMAC of a request
// the server has already accepted, not a secret.

// loadReplay reads a replay file, dropping entries older than the window.
// A missing file is an empty one.
func loadReplay(path string, now time.Time) (map[string]time.Time, error) {
	seen := map[string]time.Time{}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return seen, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read replay file: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		at, sig, ok := strings.Cut(sc.Text(), " ")
		sec, err := strconv.ParseInt(at, 10, 64)
		if !ok || err != nil || sig == "" || strings.ContainsAny(sig, " \t") {
			return nil, fmt.Errorf("replay file %s: line %d is not \"UNIX_SECONDS SIGNATURE\": fix or delete the file (deleting it lets requests of the last 10 minutes be replayed)", path, n)
		}
		if t := time.Unix(sec, 0); now.Sub(t) <= 2*MaxSkew {
			seen[sig] = t
		}
	}
	return seen, nil
}

// saveReplay replaces the replay file atomically (temp file, fsync,
// rename), so a crash leaves the old file or the new one.
func saveReplay(path string, seen map[string]time.Time) error {
	var b bytes.Buffer
	for sig, t := range seen {
		fmt.Fprintf(&b, "%d %s\n", t.Unix(), sig)
	}
	if err := atomicfile.Write(path, b.Bytes(), 0o600, true); err != nil {
		return fmt.Errorf("write replay file: %w", err)
	}
	return nil
}
