// Package model holds the OCCI domain types every layer shares: categories
// (kinds, mixins, actions) with their attribute definitions, entities
// (resources and links), attribute trees and their validation, filter
// matching, and the one error type that carries an HTTP status.
//
// It imports nothing from the project, so the category registry, the provider
// plug-ins and the HTTP edge can all speak it without importing each other.
package model

import (
	"errors"
	"fmt"
	"net/http"
)

// Error is a failure with the HTTP status it should be reported with. Every
// layer returns it for conditions a client caused or can act on; the HTTP edge
// maps it to a response in one place.
type Error struct {
	// Status is the HTTP status code (400, 403, 404, 405, 406, 409, 412, 413, 415, 500, 501, 502, 503, 504).
	Status int
	// Message says what was wrong, for the client.
	Message string
	// Attribute names the offending attribute (flat dotted name), if any.
	Attribute string
	// Err is the underlying cause, if any.
	Err error
}

func (e *Error) Error() string { return e.Message }

func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an *Error with that status and a formatted message. A %w verb
// in the format sets Err, as fmt.Errorf does, so errors.Is/As see the cause.
func Errorf(status int, format string, args ...any) *Error {
	wrapped := fmt.Errorf(format, args...)
	return &Error{Status: status, Message: wrapped.Error(), Err: errors.Unwrap(wrapped)}
}

// BadRequest is Errorf(400, …).
func BadRequest(format string, args ...any) *Error {
	return Errorf(http.StatusBadRequest, format, args...)
}

// NotFound is Errorf(404, …).
func NotFound(format string, args ...any) *Error { return Errorf(http.StatusNotFound, format, args...) }

// Conflict is Errorf(409, …).
func Conflict(format string, args ...any) *Error { return Errorf(http.StatusConflict, format, args...) }

// ErrUndefinedAttribute is the cause of the error for an attribute that
// neither the entity's kind nor its mixins define.
var ErrUndefinedAttribute = errors.New("attribute not defined")

// AttributeError is a 400 naming the attribute at fault.
func AttributeError(attr, format string, args ...any) *Error {
	e := BadRequest(format, args...)
	e.Attribute = attr
	return e
}

// StatusOf returns the status carried by err's *Error, or 0 when it carries none.
func StatusOf(err error) int {
	var e *Error
	if errors.As(err, &e) {
		return e.Status
	}
	return 0
}
