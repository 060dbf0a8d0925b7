package main

import (
	"fmt"
	"net"
)

// notifyReady tells systemd (Type=notify) that start-up is done: the
// program is attached and the VIPs are on lo, so `systemctl start` and
// `restart` return only then, and fail when the new process does. It
// sends READY=1 on the datagram socket $NOTIFY_SOCKET names (a path, or
// an abstract name starting with @, which package net maps), and does
// nothing when socket is empty: not started by systemd.
func notifyReady(socket string) error {
	if socket == "" {
		return nil
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: socket, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("notify systemd: %w", err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("READY=1")); err != nil {
		return fmt.Errorf("notify systemd: %w", err)
	}
	return nil
}
