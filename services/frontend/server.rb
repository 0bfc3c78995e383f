# frozen_string_literal: true

# Entry point: reads the environment, serves, drains on SIGTERM/SIGINT.
# Environment: see lib/frontend.rb (PORT, BIND_ADDRESS, HEALTH_PORT, ...).
require_relative 'lib/frontend'
require_relative 'lib/mini_http'

DRAIN_TIMEOUT_S = 10

$stdout.sync = true
begin
  config = Frontend::Config.from_env
rescue Frontend::ConfigError => e
  warn JSON.generate(time: Time.now.utc.iso8601(3), service: 'frontend', event: 'config_error', error: e.message)
  exit Frontend::EXIT_CONFIG_ERROR
end
app = Frontend::App.new(config)
server = MiniHTTP::Server.new(host: config.host, port: config.port, handler: app)
# HEALTH_PORT: /health only, and no request log (kubelet probes).
health = config.health_port && MiniHTTP::Server.new(host: config.host, port: config.health_port,
                                                    handler: Frontend::HealthApp.new, log_requests: false)
servers = [server, health].compact

stop_signal = nil
%w[TERM INT].each do |signal|
  Signal.trap(signal) do
    stop_signal = "SIG#{signal}"
    servers.each(&:request_stop)
  end
end

server.log(time: Time.now.utc.iso8601(3), service: 'frontend', event: 'listening',
           address: config.host, port: server.port, nodejs_url: config.nodejs_url,
           crystal_url: config.crystal_url, health_port: health&.port)
if health
  server.log(time: Time.now.utc.iso8601(3), service: 'frontend', event: 'listening', listener: 'health',
             address: config.host, port: health.port)
end
health_thread = health && Thread.new { health.serve }
server.serve
health_thread&.join
server.log(time: Time.now.utc.iso8601(3), service: 'frontend', event: 'shutdown', signal: stop_signal)
deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + DRAIN_TIMEOUT_S
drained = servers.map { |s| s.drain([deadline - Process.clock_gettime(Process::CLOCK_MONOTONIC), 0].max) }
exit(drained.all? ? 0 : 1)
