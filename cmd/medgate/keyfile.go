package main

import "os"

// keyFileExposed says whether a private key's file may be read or written
// by users other than its owner, and its mode then: anyone who reads a
// region's seed signs policies for it, a checkpoint seed signs checkpoints
// for the gateway. Only a warning: the key is still used, as before.
func keyFileExposed(path string) (mode string, exposed bool) {
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm()&0o077 == 0 {
		return "", false
	}
	return fi.Mode().Perm().String(), true
}

// keyFileWarning is the warning for an exposed key file, or "".
func keyFileWarning(prefix, path string) string {
	mode, exposed := keyFileExposed(path)
	if !exposed {
		return ""
	}
	return prefix + "WARNING: the key file " + path + " (" + mode + ") can be read or written by other users: chmod 600 it\n"
}
