package main

import "github.com/smartroute/smartroute/internal/cliflag"

// The flag types shared with the other command.
type (
	listValue     = cliflag.List
	durationValue = cliflag.Duration
	intValue      = cliflag.Int
)
