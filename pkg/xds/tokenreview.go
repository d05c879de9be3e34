package xds

import (
	"container/list"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// DefaultTokenAudience is the audience a proxy's token must have, by
// default, for the controller to accept it. It is not istiod's "istio-ca":
// a controller given istio-ca tokens could replay them to istiod and get
// certificates in its proxies' names. A token of the controller's own
// audience is good for the controller only, and istiod refuses it.
const DefaultTokenAudience = "rosetta"

// Defaults of TokenReviewOptions.
const (
	defaultReviewTTL     = time.Minute
	defaultReviewEntries = 10_000
	defaultReviewTimeout = 10 * time.Second
	// A refused token is remembered for a tenth of the TTL: long enough to
	// spare the API server a proxy retrying with it, short enough that
	// nothing lasting hangs on it.
	refusalTTLDivisor = 10
)

// TokenReviewOptions configure a TokenReviewer.
type TokenReviewOptions struct {
	// Client makes the TokenReviews. The controller's ServiceAccount needs
	// create on tokenreviews (authentication.k8s.io).
	Client kubernetes.Interface
	// Audiences are the audiences asked for: the token must have one of
	// them. []string{DefaultTokenAudience} when empty.
	Audiences []string
	// CacheTTL is how long a review's answer is reused for the same token,
	// never past the token's own expiry; a refusal is reused for a tenth
	// of it. One minute when zero.
	CacheTTL time.Duration
	// CacheSize bounds the answers kept (the oldest goes first); 10,000
	// when zero.
	CacheSize int
	// Timeout bounds one review; 10 s when zero.
	Timeout time.Duration
	// Registerer receives rosetta_xds_token_reviews_total; none when nil.
	Registerer prometheus.Registerer
}

// TokenReviewer authenticates a stream by the bearer token of its
// "authorization" metadata, as istiod does: a TokenReview with the
// configured audiences, whose user system:serviceaccount:NS:SA gives the
// namespace. Answers are cached by the token's SHA-256 for a short time,
// so that a proxy reconnecting again and again, or several streams of one
// token, do not make one review each (streams that arrive together before
// the first answer may each make one). A token over a plaintext
// connection is refused without a review.
type TokenReviewer struct {
	opts    TokenReviewOptions
	reviews *prometheus.CounterVec
	now     func() time.Time // a field for tests

	mu    sync.Mutex
	cache map[[sha256.Size]byte]*list.Element // of *reviewEntry
	order *list.List                          // oldest first
}

type reviewEntry struct {
	key     [sha256.Size]byte
	p       Principal
	refused *refusal
	until   time.Time
}

// NewTokenReviewer makes a TokenReviewer.
func NewTokenReviewer(opts TokenReviewOptions) *TokenReviewer {
	if len(opts.Audiences) == 0 {
		opts.Audiences = []string{DefaultTokenAudience}
	}
	if opts.CacheTTL <= 0 {
		opts.CacheTTL = defaultReviewTTL
	}
	if opts.CacheSize <= 0 {
		opts.CacheSize = defaultReviewEntries
	}
	if opts.Timeout <= 0 {
		opts.Timeout = defaultReviewTimeout
	}
	r := &TokenReviewer{
		opts: opts,
		reviews: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rosetta_xds_token_reviews_total",
			Help: "Proxy tokens checked, by result: authenticated or refused by a TokenReview, error (the review failed), cached (answered from the cache).",
		}, []string{"result"}),
		now:   time.Now,
		cache: map[[sha256.Size]byte]*list.Element{},
		order: list.New(),
	}
	if opts.Registerer != nil {
		opts.Registerer.MustRegister(r.reviews)
	}
	return r
}

// Authenticate implements Authenticator.
func (r *TokenReviewer) Authenticate(ctx context.Context) (Principal, error) {
	token, ok := bearerToken(ctx)
	if !ok {
		return Principal{}, fmt.Errorf("%w: no bearer token", ErrNoCredentials)
	}
	if _, secure := tlsState(ctx); !secure {
		return Principal{}, &refusal{reasonInvalidToken, codes.Unauthenticated, "xds: a bearer token over plaintext is refused"}
	}
	key := sha256.Sum256([]byte(token))
	if e, ok := r.lookup(key); ok {
		r.reviews.WithLabelValues("cached").Inc()
		return e.p, e.err()
	}
	p, refused, err := r.review(ctx, token)
	if err != nil {
		// Not cached: the next attempt asks again.
		r.reviews.WithLabelValues("error").Inc()
		return Principal{}, &refusal{reasonReviewUnavailable, codes.Unavailable, "xds: token review: " + err.Error()}
	}
	ttl := r.opts.CacheTTL
	if refused != nil {
		r.reviews.WithLabelValues("refused").Inc()
		ttl /= refusalTTLDivisor
	} else {
		r.reviews.WithLabelValues("authenticated").Inc()
	}
	until := r.now().Add(ttl)
	if exp, ok := tokenExpiry(token); ok && exp.Before(until) {
		until = exp
	}
	e := &reviewEntry{key: key, p: p, refused: refused, until: until}
	r.store(e)
	return p, e.err()
}

// err returns the entry's refusal as an error, nil for an accepted token.
func (e *reviewEntry) err() error {
	if e.refused == nil {
		return nil
	}
	return e.refused
}

// review asks the API server about token. err is set when it could not
// answer; refused when it did not accept the token.
func (r *TokenReviewer) review(ctx context.Context, token string) (p Principal, refused *refusal, err error) {
	ctx, cancel := context.WithTimeout(ctx, r.opts.Timeout)
	defer cancel()
	res, err := r.opts.Client.AuthenticationV1().TokenReviews().Create(ctx, &authenticationv1.TokenReview{
		Spec: authenticationv1.TokenReviewSpec{Token: token, Audiences: r.opts.Audiences},
	}, metav1.CreateOptions{})
	if err != nil {
		return Principal{}, nil, err
	}
	refuse := func(format string, args ...any) (Principal, *refusal, error) {
		return Principal{}, &refusal{reasonInvalidToken, codes.Unauthenticated, "xds: token refused: " + fmt.Sprintf(format, args...)}, nil
	}
	st := res.Status
	if !st.Authenticated {
		if st.Error != "" {
			return refuse("%s", st.Error)
		}
		return refuse("not authenticated")
	}
	// The API reference asks a client that names audiences to check that
	// one came back: an authenticator unaware of audiences returns none.
	if !slices.ContainsFunc(st.Audiences, func(a string) bool { return slices.Contains(r.opts.Audiences, a) }) {
		return refuse("not for audience %s", strings.Join(r.opts.Audiences, " or "))
	}
	ns, sa, ok := serviceAccount(st.User)
	if !ok {
		return refuse("user %q is not a service account", st.User.Username)
	}
	return Principal{Namespace: ns, ServiceAccount: sa, Method: MethodToken}, nil, nil
}

// serviceAccount reads "system:serviceaccount:NS:SA", checking that the
// user is in the system:serviceaccounts group as istiod does.
func serviceAccount(u authenticationv1.UserInfo) (ns, sa string, ok bool) {
	if !slices.Contains(u.Groups, "system:serviceaccounts") {
		return "", "", false
	}
	parts := strings.Split(u.Username, ":")
	if len(parts) != 4 || parts[0] != "system" || parts[1] != "serviceaccount" || parts[2] == "" || parts[3] == "" {
		return "", "", false
	}
	return parts[2], parts[3], true
}

// bearerToken returns the token of the stream's "authorization: Bearer"
// metadata.
func bearerToken(ctx context.Context) (string, bool) {
	md, _ := metadata.FromIncomingContext(ctx)
	for _, v := range md.Get("authorization") {
		scheme, token, ok := strings.Cut(v, " ")
		if ok && strings.EqualFold(scheme, "Bearer") {
			if token = strings.TrimSpace(token); token != "" {
				return token, true
			}
		}
	}
	return "", false
}

// tokenExpiry reads the exp claim of a JWT without checking it: it is
// used only to stop caching an answer the API server gave for the token.
func tokenExpiry(token string) (time.Time, bool) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return time.Time{}, false
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return time.Time{}, false
	}
	var claims struct {
		Exp *json.Number `json:"exp"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil || claims.Exp == nil {
		return time.Time{}, false
	}
	sec, err := claims.Exp.Float64()
	if err != nil {
		return time.Time{}, false
	}
	return time.Unix(int64(sec), 0), true
}

// lookup returns the cached answer for key, dropping it once stale.
func (r *TokenReviewer) lookup(key [sha256.Size]byte) (*reviewEntry, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	el, ok := r.cache[key]
	if !ok {
		return nil, false
	}
	e := el.Value.(*reviewEntry)
	if !r.now().Before(e.until) {
		r.order.Remove(el)
		delete(r.cache, key)
		return nil, false
	}
	return e, true
}

// store caches e, dropping the oldest answers beyond CacheSize.
func (r *TokenReviewer) store(e *reviewEntry) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if el, ok := r.cache[e.key]; ok {
		r.order.Remove(el)
	}
	r.cache[e.key] = r.order.PushBack(e)
	for r.order.Len() > r.opts.CacheSize {
		oldest := r.order.Front()
		r.order.Remove(oldest)
		delete(r.cache, oldest.Value.(*reviewEntry).key)
	}
}
