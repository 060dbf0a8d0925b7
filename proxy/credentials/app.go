package credentials

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/singleflight"
)

// Installation-token timing.
const (
	// refreshBefore: a token is replaced this long before it expires, so
	// no request goes out with a token about to die.
	refreshBefore = 5 * time.Minute
	// jwtLifetime stays under GitHub's 10-minute maximum; jwtBackdate
	// allows for clock drift, as GitHub recommends.
	jwtLifetime = 9 * time.Minute
	jwtBackdate = 60 * time.Second
	// lockTTL bounds how long a crashed minter can hold the lock.
	lockTTL = 15 * time.Second
	// waitPoll is how often a replica that lost the race looks for the
	// winner's token, up to waitMax.
	waitPoll = 20 * time.Millisecond
	waitMax  = 10 * time.Second
)

// appSource mints and caches one installation's tokens.
type appSource struct {
	name          string
	appID, instID int64
	key           *rsa.PrivateKey
	mintURL       string
	transport     http.RoundTripper
	redis         redis.UniversalClient
	now           func() time.Time
	log           *slog.Logger
	onMint        func(result string)
	onRedisError  func()
	sealKey       []byte
	tokenKey      string
	lockKey       string
	sf            singleflight.Group
	mu            sync.Mutex
	token         string
	expires       time.Time
}

type sharedToken struct {
	Token   string    `json:"token"`
	Expires time.Time `json:"expires_at"`
}

func parseRSAKey(pemBytes []byte) (*rsa.PrivateKey, error) {
	blk, _ := pem.Decode(pemBytes)
	if blk == nil {
		return nil, errors.New("no PEM block")
	}
	if k, err := x509.ParsePKCS1PrivateKey(blk.Bytes); err == nil {
		return k, nil
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, errors.New("not an RSA private key")
	}
	rk, ok := k.(*rsa.PrivateKey)
	if !ok {
		return nil, errors.New("not an RSA private key")
	}
	return rk, nil
}

func newAppSource(name string, appID, instID int64, keyPEM []byte, restBase string) (*appSource, error) {
	key, err := parseRSAKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("credential %s: private key: %w", name, err)
	}
	// The sealing key is derived from the App's private key: every
	// replica configured for this App can open the shared token, Redis
	// alone cannot.
	h := sha256.New()
	h.Write([]byte("glb-proxy installation token seal v1\x00"))
	h.Write(x509.MarshalPKCS1PrivateKey(key))
	// The Redis key names the installation by a digest, and uses a hash
	// tag so token and lock live in one Redis Cluster slot.
	id := sha256.Sum256([]byte(strconv.FormatInt(appID, 10) + "/" + strconv.FormatInt(instID, 10) + "\x00" + restBase))
	tag := "glb-proxy:{app:" + hex.EncodeToString(id[:8]) + "}"
	return &appSource{
		name: name, appID: appID, instID: instID, key: key,
		mintURL:  fmt.Sprintf("%s/app/installations/%d/access_tokens", restBase, instID),
		sealKey:  h.Sum(nil),
		tokenKey: tag + ":token",
		lockKey:  tag + ":lock",
	}, nil
}

// Token returns a valid installation token, minting one when needed.
func (a *appSource) Token(ctx context.Context) (string, error) {
	a.mu.Lock()
	if a.token != "" && a.now().Before(a.expires.Add(-refreshBefore)) {
		t := a.token
		a.mu.Unlock()
		return t, nil
	}
	a.mu.Unlock()
	v, err, _ := a.sf.Do("token", func() (any, error) {
		// Detached from the caller: other requests wait on this too.
		ctx := context.WithoutCancel(ctx)
		st, err := a.obtain(ctx)
		if err != nil {
			return "", err
		}
		a.mu.Lock()
		a.token, a.expires = st.Token, st.Expires
		a.mu.Unlock()
		return st.Token, nil
	})
	if err != nil {
		return "", err
	}
	return v.(string), nil
}

// Invalidate forgets a token GitHub refused, locally and in Redis (if it
// is still the shared one), so the next request mints a fresh one.
func (a *appSource) Invalidate(ctx context.Context, bad string) {
	a.mu.Lock()
	if a.token == bad {
		a.token, a.expires = "", time.Time{}
	}
	a.mu.Unlock()
	if a.redis == nil {
		return
	}
	if st, ok := a.loadShared(ctx); ok && st.Token == bad {
		if err := a.redis.Del(ctx, a.tokenKey).Err(); err != nil {
			a.redisError(err)
		}
	}
}

func (a *appSource) redisError(err error) {
	if a.onRedisError != nil {
		a.onRedisError()
	}
	a.log.Warn("redis unavailable for installation tokens; minting locally", "credential", a.name, "err", err)
}

func (a *appSource) fresh(st sharedToken) bool {
	return st.Token != "" && a.now().Before(st.Expires.Add(-refreshBefore))
}

// obtain finds a token: shared in Redis, or minted under the Redis lock,
// or (without Redis, or when Redis fails) minted locally.
func (a *appSource) obtain(ctx context.Context) (sharedToken, error) {
	if a.redis == nil {
		return a.mint(ctx)
	}
	deadline := time.Now().Add(waitMax)
	for {
		if st, ok := a.loadShared(ctx); ok && a.fresh(st) {
			a.result("shared")
			return st, nil
		}
		owner := randomHex()
		got, err := a.redis.SetNX(ctx, a.lockKey, owner, lockTTL).Result()
		if err != nil {
			a.redisError(err)
			return a.mint(ctx)
		}
		if got {
			// Another replica may have stored a token between our read
			// and our lock.
			if st, ok := a.loadShared(ctx); ok && a.fresh(st) {
				a.unlock(ctx, owner)
				a.result("shared")
				return st, nil
			}
			st, err := a.mint(ctx)
			if err == nil {
				a.storeShared(ctx, st)
			}
			a.unlock(ctx, owner)
			return st, err
		}
		// Someone else is minting: wait for the token, or for the lock to
		// go (a failed mint), then look again.
		for {
			if time.Now().After(deadline) {
				a.log.Warn("waited too long for another replica to mint; minting locally", "credential", a.name)
				return a.mint(ctx)
			}
			t := time.NewTimer(waitPoll)
			select {
			case <-ctx.Done():
				t.Stop()
				return sharedToken{}, ctx.Err()
			case <-t.C:
			}
			if st, ok := a.loadShared(ctx); ok && a.fresh(st) {
				a.result("shared")
				return st, nil
			}
			n, err := a.redis.Exists(ctx, a.lockKey).Result()
			if err != nil {
				a.redisError(err)
				return a.mint(ctx)
			}
			if n == 0 {
				break
			}
		}
	}
}

// unlockScript deletes the lock only if this replica still owns it.
var unlockScript = redis.NewScript(`if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) else return 0 end`)

func (a *appSource) unlock(ctx context.Context, owner string) {
	if err := unlockScript.Run(ctx, a.redis, []string{a.lockKey}, owner).Err(); err != nil {
		a.redisError(err)
	}
}

func (a *appSource) loadShared(ctx context.Context) (sharedToken, bool) {
	b, err := a.redis.Get(ctx, a.tokenKey).Bytes()
	if errors.Is(err, redis.Nil) {
		return sharedToken{}, false
	}
	if err != nil {
		a.redisError(err)
		return sharedToken{}, false
	}
	st, err := a.open(b)
	if err != nil {
		// Sealed with another key (a rotated App key): ignore it.
		a.log.Warn("shared installation token cannot be opened; minting a new one", "credential", a.name, "err", err)
		return sharedToken{}, false
	}
	return st, true
}

func (a *appSource) storeShared(ctx context.Context, st sharedToken) {
	ttl := st.Expires.Add(-refreshBefore).Sub(a.now())
	if ttl <= 0 {
		return
	}
	b, err := a.seal(st)
	if err != nil {
		return
	}
	if err := a.redis.Set(ctx, a.tokenKey, b, ttl).Err(); err != nil {
		a.redisError(err)
	}
}

func (a *appSource) aead() (cipher.AEAD, error) {
	blk, err := aes.NewCipher(a.sealKey)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(blk)
}

func (a *appSource) seal(st sharedToken) ([]byte, error) {
	g, err := a.aead()
	if err != nil {
		return nil, err
	}
	plain, err := json.Marshal(st)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, g.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return g.Seal(nonce, nonce, plain, []byte(a.tokenKey)), nil
}

func (a *appSource) open(b []byte) (sharedToken, error) {
	g, err := a.aead()
	if err != nil {
		return sharedToken{}, err
	}
	if len(b) < g.NonceSize() {
		return sharedToken{}, errors.New("sealed token too short")
	}
	plain, err := g.Open(nil, b[:g.NonceSize()], b[g.NonceSize():], []byte(a.tokenKey))
	if err != nil {
		return sharedToken{}, errors.New("sealed token does not open")
	}
	var st sharedToken
	if err := json.Unmarshal(plain, &st); err != nil {
		return sharedToken{}, err
	}
	return st, nil
}

func (a *appSource) result(r string) {
	if a.onMint != nil {
		a.onMint(r)
	}
}

// appJWT signs the JWT that authenticates the App itself.
func (a *appSource) appJWT() (string, error) {
	now := a.now()
	return jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{
		"iat": now.Add(-jwtBackdate).Unix(),
		"exp": now.Add(jwtLifetime).Unix(),
		"iss": strconv.FormatInt(a.appID, 10),
	}).SignedString(a.key)
}

// mint trades a JWT for an installation token.
func (a *appSource) mint(ctx context.Context) (sharedToken, error) {
	signed, err := a.appJWT()
	if err != nil {
		a.result("error")
		return sharedToken{}, fmt.Errorf("credential %s: sign app jwt: %w", a.name, err)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.mintURL, bytes.NewReader(nil))
	if err != nil {
		a.result("error")
		return sharedToken{}, fmt.Errorf("credential %s: mint installation token: %w", a.name, err)
	}
	req.Header.Set("Authorization", "Bearer "+signed)
	req.Header.Set("Accept", "application/vnd.github+json")
	req.Header.Set("X-GitHub-Api-Version", "2022-11-28")
	req.Header.Set("User-Agent", "glb-proxy")
	resp, err := a.transport.RoundTrip(req)
	if err != nil {
		a.result("error")
		return sharedToken{}, fmt.Errorf("credential %s: mint installation token: %w", a.name, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		a.result("error")
		return sharedToken{}, fmt.Errorf("credential %s: mint installation token: read: %w", a.name, err)
	}
	if resp.StatusCode != http.StatusCreated {
		var ge struct {
			Message string `json:"message"`
		}
		_ = json.Unmarshal(body, &ge)
		a.result("error")
		return sharedToken{}, fmt.Errorf("credential %s: mint installation token: GitHub answered %d %q: check app_id, installation_id and the key", a.name, resp.StatusCode, ge.Message)
	}
	var st sharedToken
	if err := json.Unmarshal(body, &st); err != nil || st.Token == "" || st.Expires.IsZero() {
		a.result("error")
		return sharedToken{}, fmt.Errorf("credential %s: mint installation token: unexpected answer", a.name)
	}
	a.result("minted")
	a.log.Info("installation token minted", "credential", a.name, "expires_at", st.Expires)
	return st, nil
}

func randomHex() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // never fails on Linux
	return hex.EncodeToString(b)
}
