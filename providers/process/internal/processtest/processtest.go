// Package processtest holds the process definition fixtures that the tests
// of the process engine and of the Process Registry provider share.
package processtest

// TrDefinition is the Process Registry README's tr example, verbatim.
const TrDefinition = `{
    "exec": "/usr/bin/tr",
    "argv": ["-d", "x"],
    "input_adapter": {
        "input_type": "file",
        "input_parameters": {
            "file_type": "stream",
            "stream_name": "STDIN"
        }
    },
    "output_adapter": {
        "output_type": "file",
        "output_parameters": {
            "file_type": "stream",
            "stream_name": "STDOUT"
        }
    }
}`

// Input and output adapters: a stream (STDIN, STDOUT) or a file named by
// the ${input_file} and ${output_file} substitutions.
const (
	StdinIn   = `{"input_type":"file","input_parameters":{"file_type":"stream","stream_name":"STDIN"}}`
	StdoutOut = `{"output_type":"file","output_parameters":{"file_type":"stream","stream_name":"STDOUT"}}`
	FileIn    = `{"input_type":"file","input_parameters":{"file_path":"${input_file}"}}`
	FileOut   = `{"output_type":"file","output_parameters":{"file_path":"${output_file}"}}`
)
