# frozen_string_literal: true

# Entry point: reads the environment, serves with Puma, drains on SIGTERM/SIGINT.
# Environment: see lib/frontend.rb (PORT, BIND_ADDRESS, HEALTH_PORT, ...); the Puma
# configuration and the capacity it gives: lib/frontend/listeners.rb and README.md.
require_relative 'lib/frontend'
require_relative 'lib/frontend/listeners'

$stdout.sync = true
log = Frontend::JsonLog.new($stdout)
fail_start = lambda do |event, message, code|
  warn JSON.generate(time: Time.now.utc.iso8601(3), service: 'frontend', event: event, error: message)
  exit code
end

begin
  config = Frontend::Config.from_env
rescue Frontend::ConfigError => e
  fail_start.call('config_error', e.message, Frontend::EXIT_CONFIG_ERROR)
end

begin
  service = Frontend::Service.new(config, log: log)
rescue SystemCallError, SocketError => e # e.g. the port is taken
  fail_start.call('listen_error', "#{e.class}: #{e.message}", 1)
end

# The trap only notes the signal and wakes the main thread, which does the rest.
wake_r, wake_w = IO.pipe
stop_signal = nil
%w[TERM INT].each do |signal|
  Signal.trap(signal) do
    stop_signal ||= "SIG#{signal}"
    wake_w.write_nonblock('.', exception: false)
  end
end

service.start
capacity = service.stats.snapshot[:capacity]
log.log(event: 'listening', address: config.host, port: service.port, nodejs_url: config.nodejs_url,
        crystal_url: config.crystal_url, health_port: service.health_port, weights_dir: config.weights_dir,
        threads: capacity[:threads], backlog: capacity[:backlog], capacity: capacity[:concurrent_requests])
if service.health_port
  log.log(event: 'listening', listener: 'health', address: config.host, port: service.health_port)
end

# Wait for a signal; a listener that stopped by itself ends the process too.
until IO.select([wake_r], nil, nil, 1.0)
  next if service.running?

  log.log(event: 'listener_stopped', error: 'a listener stopped without a signal')
  exit 1
end

log.log(event: 'shutdown', signal: stop_signal)
service.stop
drained = service.wait(Frontend::DRAIN_TIMEOUT_S + 7)
log.log(event: 'stopped', drained: drained, in_flight_cut: service.stats.forced)
exit(drained ? 0 : 1)
