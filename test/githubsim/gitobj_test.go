package githubsim

import "testing"

// Golden values from `git hash-object` and `git mktree`.
func TestHashObject(t *testing.T) {
	tests := []struct {
		name, typ, data, want string
	}{
		{"empty blob", objBlob, "", "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"},
		{"hello blob", objBlob, "hello\n", "ce013625030ba8dba906f756967f9e9ca394464a"},
		{"empty tree", objTree, "", "4b825dc642cb6eb9a060e54bf8d69288fbee4904"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := hashObject(tt.typ, []byte(tt.data)); got != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
		})
	}
}

func TestBuildTree(t *testing.T) {
	store := func(typ string, b []byte) string { return hashObject(typ, b) }
	tests := []struct {
		name  string
		files map[string]string
		want  string // from git mktree / write-tree on the same files
	}{
		{"one file", map[string]string{"hello.txt": "hello\n"}, "aaa96ced2d9a1c8e72c56b253a0e2fe78393feb7"},
		// "a.b" sorts before the directory "a" (compared as "a/").
		{"a file sorting before a directory", map[string]string{"a.b": "x\n", "a/c": "y\n"}, "98f5989e2faf485f92b12c5f13ecc470ff7d1044"},
		{"an executable", map[string]string{"run.sh": "#!/bin/sh\n"}, "4d30b2ddd4dbd82d6ad7ee4d2a4ea360f5d65b61"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := buildTree(tt.files, store); got != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
		})
	}
}

// TestSeedIsDeterministic pins the seed's git history: every server has
// the same shas, so tests and docs may name them.
func TestSeedIsDeterministic(t *testing.T) {
	a, b := newWorld(), newWorld()
	for key, ra := range a.repos {
		rb := b.repos[key]
		for name, sha := range ra.branches {
			if rb.branches[name] != sha {
				t.Errorf("%s %s: %s vs %s", key, name, sha, rb.branches[name])
			}
		}
	}
	if got := a.repo("acme", "widgets").branches["main"]; got != "8536206bd75452ca68548e4ed3551fecc2484589" {
		t.Errorf("acme/widgets main = %s", got)
	}
}
