//go:build tools

// Package tools pins the pulumi CLI that `npm run engine:install` builds: the version in go.mod,
// with the replace directives of pulumi's own pkg/go.mod repeated (go install refuses modules with
// replaces, so the CLI is built from this module instead).
package tools

import _ "github.com/pulumi/pulumi/pkg/v3/cmd/pulumi"
