package ipcsconformance

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	_ "unsafe" // go:linkname

	contentapi "github.com/containerd/containerd/api/services/content/v1"
	"github.com/containerd/containerd/content"
	"github.com/containerd/containerd/content/proxy"
	"github.com/containerd/containerd/content/testsuite"
	"github.com/containerd/containerd/defaults"
	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/containerd/pkg/dialer"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
)

// contentSeed is the testsuite's unexported counter that seeds every blob it
// generates (createContent). In one uninterrupted run of all cases no two cases
// write the same bytes. integration/run-conformance.sh runs each case in its
// own process (so a hung case cannot hide the others' results); it passes
// IPCS_CONFORMANCE_SEED=<case index * 1000> so that every case still writes
// bytes no other case wrote, as in one run.
//
//go:linkname contentSeed github.com/containerd/containerd/content/testsuite.contentSeed
var contentSeed int64

// resetTimeout bounds how long emptying the store between cases may take.
const resetTimeout = 30 * time.Second

// dial connects the way containerd 1.6.20 connects to a proxy plugin
// (services/server/server.go, proxyClients.getClient): insecure, unix dialer,
// 16 MiB send/receive limits.
func dial(t *testing.T, socket string) *grpc.ClientConn {
	t.Helper()
	backoffConfig := backoff.DefaultConfig
	backoffConfig.MaxDelay = 3 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := grpc.DialContext(ctx, dialer.DialAddress(socket),
		grpc.WithInsecure(),
		grpc.WithBlock(),
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: backoffConfig}),
		grpc.WithContextDialer(dialer.ContextDialer),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(defaults.DefaultMaxRecvMsgSize)),
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(defaults.DefaultMaxSendMsgSize)),
	)
	if err != nil {
		t.Fatalf("dial %s: %v", socket, err)
	}
	return conn
}

// resetStore aborts every ingest and deletes every blob, then checks that the
// store reports nothing left. Aborts/deletes of things that vanished meanwhile
// (NOT_FOUND) are fine; a ref still locked by a stream the client has just
// half-closed may need a moment, so everything is retried until the deadline.
func resetStore(cs content.Store) error {
	ctx, cancel := context.WithTimeout(context.Background(), resetTimeout)
	defer cancel()
	var lastErr error
	for {
		lastErr = resetOnce(ctx, cs)
		if lastErr == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("store not empty after %s: %w", resetTimeout, lastErr)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func resetOnce(ctx context.Context, cs content.Store) error {
	var errs []string
	statuses, err := cs.ListStatuses(ctx)
	if err != nil {
		return fmt.Errorf("ListStatuses: %w", err)
	}
	for _, st := range statuses {
		if err := cs.Abort(ctx, st.Ref); err != nil && !errdefs.IsNotFound(err) {
			errs = append(errs, fmt.Sprintf("Abort(%q): %v", st.Ref, err))
		}
	}
	var infos []content.Info
	if err := cs.Walk(ctx, func(info content.Info) error {
		infos = append(infos, info)
		return nil
	}); err != nil {
		return fmt.Errorf("List: %w", err)
	}
	for _, info := range infos {
		if err := cs.Delete(ctx, info.Digest); err != nil && !errdefs.IsNotFound(err) {
			errs = append(errs, fmt.Sprintf("Delete(%s): %v", info.Digest, err))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	// Verify.
	statuses, err = cs.ListStatuses(ctx)
	if err != nil {
		return fmt.Errorf("ListStatuses: %w", err)
	}
	var left []string
	for _, st := range statuses {
		left = append(left, "ingest "+st.Ref)
	}
	if err := cs.Walk(ctx, func(info content.Info) error {
		left = append(left, "blob "+info.Digest.String())
		return nil
	}); err != nil {
		return fmt.Errorf("List: %w", err)
	}
	if len(left) > 0 {
		return fmt.Errorf("still present after abort/delete: %s", strings.Join(left, ", "))
	}
	return nil
}

func TestContent(t *testing.T) {
	socket := os.Getenv("IPCS_SOCKET")
	if socket == "" {
		t.Fatal("IPCS_SOCKET is not set (path of the content store's unix socket)")
	}
	if v := os.Getenv("IPCS_CONFORMANCE_SEED"); v != "" {
		seed, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			t.Fatalf("IPCS_CONFORMANCE_SEED=%q: %v", v, err)
		}
		atomic.StoreInt64(&contentSeed, seed)
	}
	conn := dial(t, socket)
	defer conn.Close()
	cs := proxy.NewContentStore(contentapi.NewContentClient(conn))

	// Start from an empty store even if an earlier run left something behind.
	if err := resetStore(cs); err != nil {
		t.Fatalf("initial reset: %v", err)
	}

	testsuite.ContentSuite(t, "ipcs", func(ctx context.Context, root string) (context.Context, content.Store, func() error, error) {
		// Each case starts with an empty store; a failed predecessor must not
		// leak into the next case.
		if err := resetStore(cs); err != nil {
			return nil, nil, nil, fmt.Errorf("reset before case: %w", err)
		}
		// No namespace is added: containerd passes none to a proxy plugin.
		return ctx, cs, func() error { return resetStore(cs) }, nil
	})
}
