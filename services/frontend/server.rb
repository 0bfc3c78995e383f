# frozen_string_literal: true

# Entry point: reads the environment, serves, drains on SIGTERM/SIGINT.
require_relative 'lib/frontend'
require_relative 'lib/mini_http'

DRAIN_TIMEOUT_S = 10

$stdout.sync = true
config = Frontend::Config.from_env
app = Frontend::App.new(config)
server = MiniHTTP::Server.new(host: config.host, port: config.port, handler: app)

stop_signal = nil
%w[TERM INT].each do |signal|
  Signal.trap(signal) do
    stop_signal = "SIG#{signal}"
    server.request_stop
  end
end

server.log(time: Time.now.utc.iso8601(3), service: 'frontend', event: 'listening',
           address: config.host, port: server.port, nodejs_url: config.nodejs_url,
           crystal_url: config.crystal_url)
server.serve
server.log(time: Time.now.utc.iso8601(3), service: 'frontend', event: 'shutdown', signal: stop_signal)
exit(server.drain(DRAIN_TIMEOUT_S) ? 0 : 1)
