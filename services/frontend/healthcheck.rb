# frozen_string_literal: true

# Container HEALTHCHECK: exit 0 when /health on the local port answers 200
# (HEALTH_PORT when set, else PORT).
require 'net/http'

begin
  port = ENV['HEALTH_PORT'].to_s.strip
  port = ENV.fetch('PORT', '3000') if port.empty?
  http = Net::HTTP.new('127.0.0.1', Integer(port, 10), nil)
  http.open_timeout = http.read_timeout = 2
  exit(http.get('/health').code == '200' ? 0 : 1)
rescue StandardError
  exit 1
end
