// Applies an uncompressed tar from stdin into ROOT with containerd's own archive.Apply (the
// version quickdiff.sh builds against), as its walking applier does: plain (bind or
// temporary mount) or overlay (upperdir with OverlayConvertWhiteout and the lowerdirs as
// parents, like core/diff/apply/apply_linux.go).
//   goapply plain ROOT < layer.tar
//   goapply overlay UPPER [LOWER...] < layer.tar
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/containerd/containerd/v2/pkg/archive"
)

func main() {
	ctx := context.Background()
	var opts []archive.ApplyOpt
	root := os.Args[2]
	if os.Args[1] == "overlay" {
		opts = append(opts, archive.WithConvertWhiteout(archive.OverlayConvertWhiteout))
		if len(os.Args) > 3 {
			opts = append(opts, archive.WithParents(os.Args[3:]))
		}
	}
	if _, err := archive.Apply(ctx, root, os.Stdin, opts...); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}
