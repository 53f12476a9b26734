package process

// InternalContext lets the package's external tests create what only the
// provider itself may (an execution record through the validated path).
var InternalContext = internal
